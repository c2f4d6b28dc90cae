/*
 * test_ctl.c - the control socket: a real loop and a real socket in a
 * temporary directory. Clients run in forked children and report through a
 * pipe that the parent's loop watches.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctl.h"

#define MAX_PENDING 8

typedef enum {
  MODE_ECHO = 0, /* reply at once: "cmd=C arg=A\n" */
  MODE_LATER,    /* reply from a timer, 50 ms later */
  MODE_NEVER,    /* keep the conn, never reply */
  MODE_BIG,      /* reply at once with big_len bytes */
  MODE_GATHER    /* keep conns until gather of them wait, then reply */
} mode;

typedef struct server {
  char dir[64];
  char path[108]; /* fits sun_path */
  hs_loop loop;
  hs_ctl ctl;
  int started;
  mode mode;
  int calls;                      /* handler calls */
  char last_cmd[64];
  char last_arg[64];
  hs_ctl_conn *pending[MAX_PENDING];
  int npending;
  hs_timer later;
  hs_timer guard;                 /* fails a test that hangs */
  int guard_fired;
  size_t big_len;
  int gather;
  int clients_running;            /* children whose pipe is still open */
  int stop_after_reply;           /* MODE_LATER: stop the loop after it */
  pid_t wait_for;                 /* handler reaps this child first */
  int fds_at_setup;               /* open fds before the test */
} server;

typedef struct client {
  server *srv;
  pid_t pid;
  int fd;       /* read end of the result pipe */
  hs_io io;
  hs_buf out;   /* "rc ok\nmessage\nbody" from the child */
  int rc, ok;
  char *msg;    /* into out */
  char *body;   /* into out */
} client;

/* ---- server --------------------------------------------------------- */

static void reply_later(hs_timer *t) {
  server *s = t->data;
  int i;

  /* newest first, to show replies need not follow arrival */
  for (i = s->npending - 1; i >= 0; i--) {
    char body[64];
    int n = snprintf(body, sizeof body, "later %d\n", i);
    hs_ctl_reply(s->pending[i], 1, body, (size_t)n);
  }
  s->npending = 0;
  if (s->stop_after_reply)
    hs_loop_stop(&s->loop);
}

static void handler(hs_ctl *ctl, hs_ctl_conn *conn, const char *cmd,
                    const char *arg, void *data) {
  server *s = data;
  char body[256];
  int n;

  assert_ptr_equal(ctl, &s->ctl);
  s->calls++;
  snprintf(s->last_cmd, sizeof s->last_cmd, "%s", cmd);
  snprintf(s->last_arg, sizeof s->last_arg, "%s", arg);
  if (s->wait_for > 0) {
    int status;
    assert_int_equal(waitpid(s->wait_for, &status, 0), s->wait_for);
    s->wait_for = 0;
  }
  switch (s->mode) {
  case MODE_ECHO:
    n = snprintf(body, sizeof body, "cmd=%s arg=%s\n", cmd, arg);
    if (n >= (int)sizeof body)
      n = (int)sizeof body - 1; /* long args arrive cut */
    hs_ctl_reply(conn, 1, body, (size_t)n);
    break;
  case MODE_BIG: {
    char *big = malloc(s->big_len);
    size_t i;
    assert_non_null(big);
    for (i = 0; i < s->big_len; i++)
      big[i] = (char)('a' + i % 26);
    hs_ctl_reply(conn, 1, big, s->big_len);
    free(big);
    break;
  }
  case MODE_LATER:
    assert_true(s->npending < MAX_PENDING);
    s->pending[s->npending++] = conn;
    hs_loop_timer_start(&s->loop, &s->later, 50 * 1000000ull, 0);
    break;
  case MODE_NEVER:
    assert_true(s->npending < MAX_PENDING);
    s->pending[s->npending++] = conn;
    break;
  case MODE_GATHER:
    assert_true(s->npending < MAX_PENDING);
    s->pending[s->npending++] = conn;
    if (s->npending == s->gather)
      reply_later(&s->later);
    break;
  }
}

static void guard_fired(hs_timer *t) {
  server *s = t->data;

  s->guard_fired = 1;
  hs_loop_stop(&s->loop);
}

/* Counts this process's open fds. */
static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;

  assert_non_null(d);
  while (readdir(d))
    n++;
  closedir(d);
  return n;
}

static int setup(void **state) {
  server *s = calloc(1, sizeof *s);

  assert_non_null(s);
  s->fds_at_setup = count_fds();
  snprintf(s->dir, sizeof s->dir, "/tmp/hs-test-ctl-XXXXXX");
  assert_non_null(mkdtemp(s->dir));
  snprintf(s->path, sizeof s->path, "%s/ctl.sock", s->dir);
  assert_int_equal(hs_loop_init(&s->loop), 0);
  hs_loop_timer_init(&s->later, reply_later, s);
  hs_loop_timer_init(&s->guard, guard_fired, s);
  s->ctl.fd = -1;
  *state = s;
  return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type,
                        struct FTW *ftw) {
  (void)st;
  (void)type;
  (void)ftw;
  return remove(path);
}

static int teardown(void **state) {
  server *s = *state;

  if (s->started)
    hs_ctl_stop(&s->ctl);
  hs_loop_timer_stop(&s->later);
  hs_loop_timer_stop(&s->guard);
  hs_loop_close(&s->loop);
  assert_int_equal(count_fds(), s->fds_at_setup); /* no conn left open */
  /* some tests leave the directory group-accessible or nested */
  chmod(s->dir, 0700);
  if (nftw(s->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS) != 0)
    fprintf(stderr, "could not remove %s\n", s->dir);
  free(s);
  return 0;
}

static void server_start(server *s) {
  hs_error err;

  hs_error_clear(&err);
  if (hs_ctl_start(&s->ctl, &s->loop, s->path, handler, s, &err) != 0)
    fail_msg("hs_ctl_start: %s", err.msg);
  s->started = 1;
}

/* Runs the loop until every client has reported, or 10 s pass. */
static void server_run(server *s) {
  assert_int_equal(hs_loop_timer_start(&s->loop, &s->guard,
                                       10000 * 1000000ull, 0),
                   0);
  assert_int_equal(hs_loop_run(&s->loop), 0);
  hs_loop_timer_stop(&s->guard);
  assert_false(s->guard_fired);
}

/* Runs the loop for ms milliseconds. */
static void server_run_for(server *s, unsigned ms) {
  assert_int_equal(hs_loop_timer_start(&s->loop, &s->guard,
                                       ms * 1000000ull, 0),
                   0);
  assert_int_equal(hs_loop_run(&s->loop), 0);
  s->guard_fired = 0;
}

/* ---- clients ---------------------------------------------------------- */

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      _exit(3);
    p += w;
    n -= (size_t)w;
  }
}

static void client_on_pipe(hs_io *io, uint32_t events) {
  client *c = io->data;
  char chunk[65536];
  ssize_t n;

  (void)events;
  n = read(c->fd, chunk, sizeof chunk);
  if (n < 0 && errno == EINTR)
    return;
  if (n > 0) {
    hs_buf_append(&c->out, chunk, (size_t)n);
    return;
  }
  hs_loop_io_stop(&c->io);
  if (--c->srv->clients_running == 0)
    hs_loop_stop(&c->srv->loop);
}

/* Forks a child that sends "cmd arg" with hs_ctl_request, as uid as_uid
 * when >= 0, and writes the outcome to a pipe. */
static void client_start(server *s, client *c, const char *cmd,
                         const char *arg, int timeout_ms, int as_uid) {
  int p[2];

  memset(c, 0, sizeof *c);
  c->srv = s;
  hs_buf_init(&c->out);
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  c->pid = fork();
  assert_true(c->pid >= 0);
  if (c->pid == 0) {
    hs_buf reply, res;
    hs_error err;
    int ok = 0, rc;

    close(p[0]);
    if (as_uid >= 0 && (setgroups(0, NULL) != 0 || setgid(as_uid) != 0 ||
                        setuid(as_uid) != 0))
      _exit(4);
    hs_buf_init(&reply);
    hs_buf_init(&res);
    rc = hs_ctl_request(s->path, cmd, arg, timeout_ms, &reply, &ok, &err);
    hs_buf_printf(&res, "%d %d\n%s\n", rc, ok, rc ? err.msg : "");
    if (rc == 0)
      hs_buf_append(&res, reply.data, reply.len);
    write_all(p[1], res.data, res.len);
    hs_buf_free(&reply);
    hs_buf_free(&res);
    _exit(0);
  }
  close(p[1]);
  c->fd = p[0];
  assert_int_equal(hs_loop_io_start(&s->loop, &c->io, c->fd, EPOLLIN,
                                    client_on_pipe, c),
                   0);
  s->clients_running++;
}

/* Reaps the child and parses what it reported. */
static void client_finish(client *c) {
  int status;
  char *nl;

  assert_int_equal(waitpid(c->pid, &status, 0), c->pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  close(c->fd);
  assert_non_null(c->out.data);
  assert_int_equal(sscanf(c->out.data, "%d %d", &c->rc, &c->ok), 2);
  c->msg = strchr(c->out.data, '\n') + 1;
  nl = strchr(c->msg, '\n');
  assert_non_null(nl);
  *nl = '\0';
  c->body = nl + 1;
}

static void client_free(client *c) {
  hs_buf_free(&c->out);
}

/* Connects a raw socket to path. */
static int raw_connect(const char *path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

  if (fd < 0)
    return -1;
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Leaves a stale socket file at path: bound, then closed. */
static void make_stale_socket(const char *path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);

  assert_true(fd >= 0);
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  close(fd);
}

/* ---- tests ------------------------------------------------------------ */

static void test_ctl_round_trip(void **state) {
  server *s = *state;
  client c;

  server_start(s);
  client_start(s, &c, "reload", "counter", 5000, -1);
  server_run(s);
  client_finish(&c);
  assert_int_equal(c.rc, 0);
  assert_int_equal(c.ok, 1);
  assert_string_equal(c.body, "cmd=reload arg=counter\n");
  assert_int_equal(s->calls, 1);
  client_free(&c);
}

static void test_ctl_command_without_arg(void **state) {
  server *s = *state;
  client c;

  server_start(s);
  client_start(s, &c, "status", NULL, 5000, -1);
  server_run(s);
  client_finish(&c);
  assert_int_equal(c.rc, 0);
  assert_string_equal(c.body, "cmd=status arg=\n");
  assert_string_equal(s->last_arg, "");
  client_free(&c);
}

static void test_ctl_async_reply_after_timer(void **state) {
  server *s = *state;
  client c;
  uint64_t t0 = hs_now_ns();

  s->mode = MODE_LATER;
  server_start(s);
  client_start(s, &c, "reload", "counter", 5000, -1);
  server_run(s);
  client_finish(&c);
  assert_int_equal(c.rc, 0);
  assert_int_equal(c.ok, 1);
  assert_string_equal(c.body, "later 0\n");
  assert_true(hs_now_ns() - t0 >= 50 * 1000000ull);
  assert_null(s->ctl.conns);
  client_free(&c);
}

static void test_ctl_concurrent_clients(void **state) {
  server *s = *state;
  client c[3];
  int seen = 0, i;

  s->mode = MODE_GATHER;
  s->gather = 3;
  server_start(s);
  for (i = 0; i < 3; i++)
    client_start(s, &c[i], "ping", "", 5000, -1);
  server_run(s);
  for (i = 0; i < 3; i++) {
    client_finish(&c[i]);
    assert_int_equal(c[i].rc, 0);
    assert_int_equal(c[i].ok, 1);
    assert_int_equal(strncmp(c[i].body, "later ", 6), 0);
    seen |= 1 << atoi(c[i].body + 6);
    client_free(&c[i]);
  }
  /* all three were held at once, and answered in reverse order */
  assert_int_equal(seen, 7);
  assert_int_equal(s->calls, 3);
}

static void test_ctl_large_reply_sent_in_pieces(void **state) {
  server *s = *state;
  client c;
  size_t i, n;

  s->mode = MODE_BIG;
  s->big_len = 4u << 20; /* far more than a socket buffer */
  server_start(s);
  client_start(s, &c, "big", "", 10000, -1);
  server_run(s);
  client_finish(&c);
  assert_int_equal(c.rc, 0);
  assert_int_equal(c.ok, 1);
  n = c.out.len - (size_t)(c.body - c.out.data);
  assert_int_equal(n, s->big_len);
  for (i = 0; i < n; i++)
    if (c.body[i] != (char)('a' + i % 26))
      fail_msg("byte %zu differs", i);
  client_free(&c);
}

static void test_ctl_second_server_is_busy(void **state) {
  server *s = *state;
  hs_ctl other;
  hs_error err;
  char want[256];
  struct stat st;

  server_start(s);
  assert_int_equal(hs_ctl_start(&other, &s->loop, s->path, handler, s, &err),
                   HS_EBUSY);
  assert_string_equal(err.stage, "control");
  snprintf(want, sizeof want,
           "control socket %s is in use by another hotswap (pid %d); pass "
           "--control to choose another",
           s->path, (int)getpid());
  assert_string_equal(err.msg, want);
  hs_ctl_stop(&other); /* harmless after a failed start */
  /* the first server's socket is untouched */
  assert_int_equal(lstat(s->path, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
}

static void test_ctl_replaces_stale_socket(void **state) {
  server *s = *state;
  client c;

  make_stale_socket(s->path);
  server_start(s);
  client_start(s, &c, "ping", "", 5000, -1);
  server_run(s);
  client_finish(&c);
  assert_int_equal(c.rc, 0);
  assert_string_equal(c.body, "cmd=ping arg=\n");
  client_free(&c);
}

static void test_ctl_refuses_path_that_is_not_a_socket(void **state) {
  server *s = *state;
  hs_error err;
  struct stat st;
  int fd = open(s->path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

  assert_true(fd >= 0);
  close(fd);
  assert_int_equal(hs_ctl_start(&s->ctl, &s->loop, s->path, handler, s, &err),
                   HS_EEXIST);
  assert_non_null(strstr(err.msg, "exists and is not a socket"));
  assert_int_equal(stat(s->path, &st), 0);
  assert_true(S_ISREG(st.st_mode));
}

static void test_ctl_socket_mode_0600(void **state) {
  server *s = *state;
  struct stat st;

  server_start(s);
  assert_int_equal(lstat(s->path, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  assert_int_equal(st.st_mode & 07777, 0600);
  assert_int_equal(st.st_uid, geteuid());
}

static void test_ctl_creates_private_dir(void **state) {
  server *s = *state;
  char sub[96];
  struct stat st;
  mode_t old = umask(022);

  snprintf(sub, sizeof sub, "%s/run", s->dir);
  snprintf(s->path, sizeof s->path, "%s/ctl.sock", sub);
  server_start(s);
  umask(old);
  assert_int_equal(lstat(sub, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(st.st_mode & 07777, 0700);
  assert_int_equal(lstat(s->path, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0600);
}

static void test_ctl_refuses_dir_others_can_write(void **state) {
  server *s = *state;
  hs_error err;

  assert_int_equal(chmod(s->dir, 0777), 0);
  assert_int_equal(hs_ctl_start(&s->ctl, &s->loop, s->path, handler, s, &err),
                   HS_EACCES);
  assert_non_null(strstr(err.msg, s->dir));
  assert_non_null(strstr(err.msg, "mode 0777"));
  assert_int_equal(access(s->path, F_OK), -1);
}

/* A readable directory is fine (the socket is 0600, peers are checked),
 * and so is a sticky one like /tmp. */
static void test_ctl_accepts_readable_or_sticky_dir(void **state) {
  server *s = *state;
  hs_error err;
  struct stat st;

  assert_int_equal(chmod(s->dir, 0755), 0);
  assert_int_equal(
      hs_ctl_start(&s->ctl, &s->loop, s->path, handler, s, &err), 0);
  assert_int_equal(stat(s->path, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0600);
  hs_ctl_stop(&s->ctl);
  assert_int_equal(chmod(s->dir, 01777), 0);
  assert_int_equal(
      hs_ctl_start(&s->ctl, &s->loop, s->path, handler, s, &err), 0);
  hs_ctl_stop(&s->ctl);
}

static void test_ctl_refuses_missing_parent(void **state) {
  server *s = *state;
  hs_error err;

  snprintf(s->path, sizeof s->path, "%s/a/b/ctl.sock", s->dir);
  assert_int_equal(hs_ctl_start(&s->ctl, &s->loop, s->path, handler, s, &err),
                   HS_ENOENT);
  assert_non_null(strstr(err.msg, "cannot create directory"));
}

static void test_ctl_rejects_long_path(void **state) {
  server *s = *state;
  char path[200];
  hs_error err;

  memset(path, 'p', sizeof path - 1);
  path[0] = '/';
  path[sizeof path - 1] = '\0';
  assert_int_equal(hs_ctl_start(&s->ctl, &s->loop, path, handler, s, &err),
                   HS_EINVAL);
  assert_non_null(strstr(err.msg, "is too long (199 bytes, at most 107)"));
}

static void test_ctl_stop_unlinks_path(void **state) {
  server *s = *state;

  server_start(s);
  assert_int_equal(access(s->path, F_OK), 0);
  hs_ctl_stop(&s->ctl);
  s->started = 0;
  assert_int_equal(access(s->path, F_OK), -1);
  assert_int_equal(errno, ENOENT);
  hs_ctl_stop(&s->ctl); /* twice is harmless */
}

static void test_ctl_rejects_long_request(void **state) {
  server *s = *state;
  char arg[5000];
  client c;

  memset(arg, 'x', sizeof arg - 1);
  arg[sizeof arg - 1] = '\0';
  server_start(s);
  client_start(s, &c, "reload", arg, 5000, -1);
  server_run(s);
  client_finish(&c);
  assert_int_equal(c.rc, 0);
  assert_int_equal(c.ok, 0);
  assert_string_equal(c.body, "request too long\n");
  assert_int_equal(s->calls, 0);
  client_free(&c);
}

static void test_ctl_request_at_the_limit(void **state) {
  server *s = *state;
  char arg[4096 - 8 + 1]; /* "reload " + arg + "\n" = 4096 bytes */
  client c;

  memset(arg, 'y', sizeof arg - 1);
  arg[sizeof arg - 1] = '\0';
  server_start(s);
  client_start(s, &c, "reload", arg, 5000, -1);
  server_run(s);
  client_finish(&c);
  assert_int_equal(c.rc, 0);
  assert_int_equal(c.ok, 1);
  assert_int_equal(s->calls, 1);
  assert_string_equal(s->last_cmd, "reload");
  client_free(&c);

  /* one byte more is too long */
  client_start(s, &c, "reloads", arg, 5000, -1);
  server_run(s);
  client_finish(&c);
  assert_int_equal(c.ok, 0);
  assert_string_equal(c.body, "request too long\n");
  assert_int_equal(s->calls, 1);
  client_free(&c);
}

static void test_ctl_client_vanishing_before_reply(void **state) {
  server *s = *state;
  pid_t pid;

  s->mode = MODE_LATER;
  s->stop_after_reply = 1;
  server_start(s);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = raw_connect(s->path);
    if (fd < 0 || write(fd, "slow\n", 5) != 5)
      _exit(1);
    _exit(0); /* gone before the reply */
  }
  s->wait_for = pid; /* the handler reaps it: the client is surely gone */
  server_run(s);
  assert_int_equal(s->calls, 1);
  assert_int_equal(s->npending, 0);
  assert_null(s->ctl.conns);
}

static void test_ctl_drops_partial_line(void **state) {
  server *s = *state;
  pid_t pid;
  int status;

  server_start(s);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = raw_connect(s->path);
    if (fd < 0 || write(fd, "stat", 4) != 4)
      _exit(1);
    _exit(0);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_int_equal(WEXITSTATUS(status), 0);
  server_run_for(s, 200);
  assert_int_equal(s->calls, 0);
  assert_null(s->ctl.conns);
}

static void test_ctl_stop_drops_pending_conns(void **state) {
  server *s = *state;
  int fd;

  s->mode = MODE_NEVER;
  server_start(s);
  fd = raw_connect(s->path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "hold\n", 5), 5);
  while (s->calls == 0)
    server_run_for(s, 20);
  assert_int_equal(s->npending, 1);
  assert_non_null(s->ctl.conns);
  hs_ctl_stop(&s->ctl); /* the pending conn goes with it */
  s->started = 0;
  s->npending = 0;
  /* the client sees the end of the stream without a reply */
  {
    char b[8];
    assert_int_equal(read(fd, b, sizeof b), 0);
  }
  close(fd);
}

static void test_ctl_client_times_out(void **state) {
  server *s = *state;
  client c;
  char want[200];

  s->mode = MODE_NEVER;
  server_start(s);
  client_start(s, &c, "hang", "", 200, -1);
  server_run(s);
  client_finish(&c);
  assert_int_equal(c.rc, HS_ETIMEDOUT);
  snprintf(want, sizeof want, "no reply from %s within 200 ms", s->path);
  assert_string_equal(c.msg, want);
  client_free(&c);
}

static void test_ctl_no_host_listening(void **state) {
  server *s = *state;
  hs_buf reply;
  hs_error err;
  char want[200];
  int ok = 7;

  hs_buf_init(&reply);
  assert_int_equal(hs_ctl_request(s->path, "status", NULL, 1000, &reply, &ok,
                                  &err),
                   HS_ENOENT);
  snprintf(want, sizeof want,
           "no hotswap host is listening on %s (is it running? pass "
           "--control)",
           s->path);
  assert_string_equal(err.msg, want);
  assert_int_equal(ok, 0);

  /* a stale socket file: connection refused, same words */
  make_stale_socket(s->path);
  assert_int_equal(hs_ctl_request(s->path, "status", NULL, 1000, &reply, &ok,
                                  &err),
                   HS_ENOENT);
  assert_string_equal(err.msg, want);
  hs_buf_free(&reply);
}

static void test_ctl_client_rejects_malformed_reply(void **state) {
  server *s = *state;
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  hs_buf reply;
  hs_error err;
  int lfd, ok, status;
  pid_t pid;

  lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(lfd >= 0);
  memcpy(a.sun_path, s->path, sizeof s->path);
  assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(lfd, 4), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    char b[64];
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0 || read(fd, b, sizeof b) <= 0)
      _exit(1);
    if (write(fd, "bogus\nbody", 10) != 10)
      _exit(2);
    _exit(0);
  }
  close(lfd);
  hs_buf_init(&reply);
  assert_int_equal(hs_ctl_request(s->path, "status", "", 5000, &reply, &ok,
                                  &err),
                   HS_EIO);
  assert_non_null(strstr(err.msg, "malformed reply from "));
  assert_non_null(strstr(err.msg, "\"bogus\""));
  hs_buf_free(&reply);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_ctl_client_rejects_newline(void **state) {
  server *s = *state;
  hs_buf reply;
  hs_error err;
  int ok;

  hs_buf_init(&reply);
  assert_int_equal(hs_ctl_request(s->path, "reload", "a\nb", 1000, &reply,
                                  &ok, &err),
                   HS_EINVAL);
  assert_non_null(strstr(err.msg, "newline"));
  hs_buf_free(&reply);
}

static void test_ctl_refuses_other_uid(void **state) {
  server *s = *state;
  client c;

  if (geteuid() != 0)
    skip(); /* only root can play another user */
  server_start(s);
  /* let the other user reach the socket: only SO_PEERCRED stops it */
  assert_int_equal(chmod(s->dir, 0711), 0);
  assert_int_equal(chmod(s->path, 0666), 0);
  client_start(s, &c, "status", "", 5000, 65534);
  server_run(s);
  client_finish(&c);
  assert_int_equal(c.rc, 0);
  assert_int_equal(c.ok, 0);
  assert_string_equal(c.body,
                      "refused: uid 65534 is not the owner of this hotswap\n");
  assert_int_equal(s->calls, 0);
  client_free(&c);
}

static void test_ctl_default_path(void **state) {
  char *p, want[64];
  char *saved_ctl = getenv("HOTSWAP_CONTROL");
  char *saved_xdg = getenv("XDG_RUNTIME_DIR");

  (void)state;
  saved_ctl = saved_ctl ? strdup(saved_ctl) : NULL;
  saved_xdg = saved_xdg ? strdup(saved_xdg) : NULL;

  setenv("HOTSWAP_CONTROL", "/x/y.sock", 1);
  setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
  p = hs_ctl_default_path();
  assert_string_equal(p, "/x/y.sock");
  free(p);

  unsetenv("HOTSWAP_CONTROL");
  p = hs_ctl_default_path();
  assert_string_equal(p, "/run/user/1000/hotswap/control.sock");
  free(p);

  unsetenv("XDG_RUNTIME_DIR");
  p = hs_ctl_default_path();
  snprintf(want, sizeof want, "/tmp/hotswap-%u/control.sock",
           (unsigned)geteuid());
  assert_string_equal(p, want);
  free(p);

  if (saved_ctl)
    setenv("HOTSWAP_CONTROL", saved_ctl, 1);
  if (saved_xdg)
    setenv("XDG_RUNTIME_DIR", saved_xdg, 1);
  free(saved_ctl);
  free(saved_xdg);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_ctl_round_trip),
      T(test_ctl_command_without_arg),
      T(test_ctl_async_reply_after_timer),
      T(test_ctl_concurrent_clients),
      T(test_ctl_large_reply_sent_in_pieces),
      T(test_ctl_second_server_is_busy),
      T(test_ctl_replaces_stale_socket),
      T(test_ctl_refuses_path_that_is_not_a_socket),
      T(test_ctl_socket_mode_0600),
      T(test_ctl_creates_private_dir),
      T(test_ctl_refuses_dir_others_can_write),
      T(test_ctl_accepts_readable_or_sticky_dir),
      T(test_ctl_refuses_missing_parent),
      T(test_ctl_rejects_long_path),
      T(test_ctl_stop_unlinks_path),
      T(test_ctl_rejects_long_request),
      T(test_ctl_request_at_the_limit),
      T(test_ctl_client_vanishing_before_reply),
      T(test_ctl_drops_partial_line),
      T(test_ctl_stop_drops_pending_conns),
      T(test_ctl_client_times_out),
      T(test_ctl_no_host_listening),
      T(test_ctl_client_rejects_malformed_reply),
      T(test_ctl_client_rejects_newline),
      T(test_ctl_refuses_other_uid),
      T(test_ctl_default_path),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
