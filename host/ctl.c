/*
 * ctl.c - the server side of the control socket: listen, accept our own
 * user's connections, read one request line, hand it to the handler and
 * write its reply (now or later), then close.
 */
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define HS_CTL_MAX_REQUEST 4096

struct hs_ctl_conn {
  hs_ctl *ctl;
  hs_ctl_conn *prev, *next;          /* in ctl->conns */
  int fd;
  hs_io io;                          /* EPOLLIN while reading, EPOLLOUT
                                        while a reply waits to be sent */
  size_t inlen;                      /* bytes of in used */
  char in[HS_CTL_MAX_REQUEST + 1];   /* the request line, NUL-terminated */
  hs_buf out;                        /* the reply */
  size_t sent;                       /* bytes of out already sent */
};

static void conn_close(hs_ctl_conn *c) {
  hs_ctl *ctl = c->ctl;

  hs_loop_io_stop(&c->io);
  close(c->fd);
  if (c->prev)
    c->prev->next = c->next;
  else
    ctl->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  hs_buf_free(&c->out);
  free(c);
}

/* Sends what is left of the reply. Returns 1 when the conn is finished
 * (all sent, or the client is gone) and has been closed, 0 if it must wait
 * for EPOLLOUT. */
static int conn_flush(hs_ctl_conn *c) {
  while (c->sent < c->out.len) {
    ssize_t n = send(c->fd, c->out.data + c->sent, c->out.len - c->sent,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c->sent += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return 0;
    break; /* EPIPE, ECONNRESET, ...: the client is gone */
  }
  conn_close(c);
  return 1;
}

static void conn_on_writable(hs_io *io, uint32_t events) {
  hs_ctl_conn *c = io->data;

  if (events & (EPOLLERR | EPOLLHUP)) {
    conn_close(c);
    return;
  }
  conn_flush(c);
}

/* The request line is complete (NUL-terminated in c->in): split it and
 * call the handler. c may be gone when this returns. */
static void conn_dispatch(hs_ctl_conn *c) {
  hs_ctl *ctl = c->ctl;
  char *cmd = c->in;
  char *arg;
  size_t len = strlen(cmd);

  if (len > 0 && cmd[len - 1] == '\r')
    cmd[--len] = '\0';
  arg = strchr(cmd, ' ');
  if (arg)
    *arg++ = '\0';
  else
    arg = cmd + len;

  hs_loop_io_stop(&c->io);
  ctl->handler(ctl, c, cmd, arg, ctl->data);
}

static void conn_on_readable(hs_io *io, uint32_t events) {
  hs_ctl_conn *c = io->data;
  char *nl;
  ssize_t n;

  (void)events;
  for (;;) {
    if (c->inlen == HS_CTL_MAX_REQUEST) {
      static const char msg[] = "request too long\n";
      hs_ctl_reply(c, 0, msg, sizeof msg - 1);
      return;
    }
    n = recv(c->fd, c->in + c->inlen, HS_CTL_MAX_REQUEST - c->inlen,
             MSG_DONTWAIT);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (n <= 0) { /* closed before a full line, or an error */
      conn_close(c);
      return;
    }
    nl = memchr(c->in + c->inlen, '\n', (size_t)n);
    c->inlen += (size_t)n;
    if (nl) {
      *nl = '\0';
      conn_dispatch(c);
      return;
    }
  }
}

static void ctl_accept_one(hs_ctl *ctl, int fd) {
  hs_ctl_conn *c = calloc(1, sizeof *c);
  struct ucred cred;
  socklen_t clen = sizeof cred;

  if (!c) {
    close(fd);
    return;
  }
  c->ctl = ctl;
  c->fd = fd;
  hs_buf_init(&c->out);
  c->next = ctl->conns;
  if (c->next)
    c->next->prev = c;
  ctl->conns = c;

  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
    conn_close(c);
    return;
  }
  if (cred.uid != geteuid()) {
    char msg[96];
    int len = snprintf(msg, sizeof msg,
                       "refused: uid %u is not the owner of this hotswap\n",
                       (unsigned)cred.uid);
    hs_ctl_reply(c, 0, msg, (size_t)len);
    return;
  }
  if (hs_loop_io_start(ctl->loop, &c->io, fd, EPOLLIN, conn_on_readable,
                       c) != 0)
    conn_close(c);
}

static void ctl_on_listen(hs_io *io, uint32_t events) {
  hs_ctl *ctl = io->data;

  (void)events;
  for (;;) {
    int fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      ctl_accept_one(ctl, fd);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED)
      continue;
    return; /* EAGAIN; or EMFILE and friends: retried on the next event */
  }
}

/* Makes sure the directory of path exists (made 0700 when we make it) and
 * that nobody else can swap the socket in it: ours or root's, and not
 * writable by others unless sticky. The socket itself is 0600 and every
 * peer's uid is checked, so a readable directory is fine. */
static int ctl_prepare_dir(const char *path, hs_error *err) {
  const char *slash = strrchr(path, '/');
  char *dir;
  struct stat st;
  int rc = 0;

  if (!slash)
    dir = strdup(".");
  else if (slash == path)
    dir = strdup("/");
  else
    dir = strndup(path, (size_t)(slash - path));
  if (!dir)
    return hs_error_set(err, HS_ENOMEM, "control", "out of memory");

  if (mkdir(dir, 0700) == 0) {
    /* the umask may have taken bits we need */
    if (chmod(dir, 0700) != 0)
      rc = hs_error_set(err, -errno, "control",
                        "cannot set mode 0700 on directory %s: %s", dir,
                        strerror(errno));
  } else if (errno != EEXIST) {
    rc = hs_error_set(err, -errno, "control",
                      "cannot create directory %s for the control socket: "
                      "%s",
                      dir, strerror(errno));
  }
  if (rc == 0) {
    if (lstat(dir, &st) != 0)
      rc = hs_error_set(err, -errno, "control", "cannot stat %s: %s", dir,
                        strerror(errno));
    else if (!S_ISDIR(st.st_mode))
      rc = hs_error_set(err, HS_EINVAL, "control",
                        "%s is not a directory (control socket %s)", dir,
                        path);
    else if (st.st_uid != geteuid() && st.st_uid != 0)
      rc = hs_error_set(err, HS_EACCES, "control",
                        "directory %s of the control socket belongs to uid "
                        "%u, not to us (uid %u); pass --control to choose "
                        "another path",
                        dir, (unsigned)st.st_uid, (unsigned)geteuid());
    else if ((st.st_mode & 022) && !(st.st_mode & S_ISVTX))
      /* Others could replace our socket with theirs. (A sticky directory
       * such as /tmp is fine: only we may remove what we put there.) */
      rc = hs_error_set(err, HS_EACCES, "control",
                        "directory %s of the control socket has mode %04o: "
                        "others could replace the socket (chmod go-w it, or "
                        "pass --control)",
                        dir, (unsigned)(st.st_mode & 07777));
  }
  free(dir);
  return rc;
}

/* If something exists at path: fails with HS_EBUSY when a host answers
 * there, removes it when it is a stale socket. */
static int ctl_clear_path(const struct sockaddr_un *addr, hs_error *err) {
  const char *path = addr->sun_path;
  struct stat st;
  struct ucred cred;
  socklen_t clen = sizeof cred;
  int fd, rc, e;

  if (lstat(path, &st) != 0) {
    if (errno == ENOENT)
      return 0;
    return hs_error_set(err, -errno, "control", "cannot stat %s: %s", path,
                        strerror(errno));
  }
  if (!S_ISSOCK(st.st_mode))
    return hs_error_set(err, HS_EEXIST, "control",
                        "%s exists and is not a socket; pass --control to "
                        "choose another path",
                        path);

  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return hs_error_set(err, -errno, "control", "socket: %s",
                        strerror(errno));
  rc = connect(fd, (const struct sockaddr *)addr, sizeof *addr);
  e = errno;
  if (rc == 0 || e == EAGAIN) {
    if (rc == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0 &&
        cred.pid > 0)
      rc = hs_error_set(err, HS_EBUSY, "control",
                        "control socket %s is in use by another hotswap "
                        "(pid %d); pass --control to choose another",
                        path, (int)cred.pid);
    else
      rc = hs_error_set(err, HS_EBUSY, "control",
                        "control socket %s is in use by another hotswap; "
                        "pass --control to choose another",
                        path);
    close(fd);
    return rc;
  }
  close(fd);
  if (e != ECONNREFUSED)
    return hs_error_set(err, -e, "control", "cannot probe %s: %s", path,
                        strerror(e));
  if (unlink(path) != 0 && errno != ENOENT)
    return hs_error_set(err, -errno, "control",
                        "cannot remove stale control socket %s: %s", path,
                        strerror(errno));
  return 0;
}

/*
 * Listens on path; see ctl.h. ctl is fully initialised even on failure, so
 * hs_ctl_stop is harmless afterwards.
 */
int hs_ctl_start(hs_ctl *ctl, hs_loop *loop, const char *path,
                 hs_ctl_handler handler, void *data, hs_error *err) {
  struct sockaddr_un addr;
  size_t len = strlen(path);
  mode_t old_mask;
  int rc, e;

  memset(ctl, 0, sizeof *ctl);
  ctl->fd = -1;
  ctl->loop = loop;
  ctl->handler = handler;
  ctl->data = data;

  if (len == 0)
    return hs_error_set(err, HS_EINVAL, "control",
                        "the control socket path is empty");
  if (len >= sizeof addr.sun_path)
    return hs_error_set(err, HS_EINVAL, "control",
                        "control socket path %s is too long (%zu bytes, at "
                        "most %zu)",
                        path, len, sizeof addr.sun_path - 1);
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path, len + 1);

  if ((rc = ctl_prepare_dir(path, err)) != 0)
    return rc;
  if ((rc = ctl_clear_path(&addr, err)) != 0)
    return rc;

  ctl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (ctl->fd < 0)
    return hs_error_set(err, -errno, "control", "socket: %s",
                        strerror(errno));
  old_mask = umask(077);
  rc = bind(ctl->fd, (const struct sockaddr *)&addr, sizeof addr);
  e = errno;
  umask(old_mask);
  if (rc != 0) {
    if (e == EADDRINUSE)
      rc = hs_error_set(err, HS_EBUSY, "control",
                        "control socket %s is in use by another hotswap; "
                        "pass --control to choose another",
                        path);
    else
      rc = hs_error_set(err, -e, "control", "cannot bind %s: %s", path,
                        strerror(e));
    goto fail_close;
  }
  if (chmod(path, 0600) != 0) {
    e = errno;
    rc = hs_error_set(err, -e, "control", "cannot chmod %s: %s", path,
                      strerror(e));
    goto fail_unlink;
  }
  if (listen(ctl->fd, SOMAXCONN) != 0) {
    e = errno;
    rc = hs_error_set(err, -e, "control", "cannot listen on %s: %s", path,
                      strerror(e));
    goto fail_unlink;
  }
  ctl->path = strdup(path);
  if (!ctl->path) {
    rc = hs_error_set(err, HS_ENOMEM, "control", "out of memory");
    goto fail_unlink;
  }
  rc = hs_loop_io_start(loop, &ctl->io, ctl->fd, EPOLLIN, ctl_on_listen, ctl);
  if (rc != 0) {
    rc = hs_error_set(err, rc, "control", "cannot watch %s: %s", path,
                      hs_strerror(rc));
    goto fail_unlink;
  }
  return 0;

fail_unlink:
  unlink(path);
  free(ctl->path);
  ctl->path = NULL;
fail_close:
  close(ctl->fd);
  ctl->fd = -1;
  return rc;
}

int hs_ctl_adopt(hs_ctl *ctl, hs_loop *loop, int fd, const char *path,
                 hs_ctl_handler handler, void *data, hs_error *err) {
  struct sockaddr_un addr;
  socklen_t alen = sizeof addr;
  int domain = 0, type = 0, listening = 0, rc;
  socklen_t ilen = sizeof(int);

  memset(ctl, 0, sizeof *ctl);
  ctl->fd = -1;
  ctl->loop = loop;
  ctl->handler = handler;
  ctl->data = data;
  memset(&addr, 0, sizeof addr);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &ilen) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &ilen) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ilen) != 0 ||
      getsockname(fd, (struct sockaddr *)&addr, &alen) != 0 ||
      domain != AF_UNIX || type != SOCK_STREAM || !listening)
    return hs_error_set(err, HS_EINVAL, "control",
                        "fd %d handed over as the control socket is not a "
                        "listening unix stream socket",
                        fd);
  if (strncmp(addr.sun_path, path, sizeof addr.sun_path) != 0)
    return hs_error_set(err, HS_EINVAL, "control",
                        "the control socket handed over is bound to %s, not "
                        "to %s",
                        addr.sun_path, path);
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0 ||
      fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
    return hs_error_set(err, -errno, "control", "fcntl on %s: %s", path,
                        strerror(errno));
  ctl->path = strdup(path);
  if (!ctl->path)
    return hs_error_set(err, HS_ENOMEM, "control", "out of memory");
  ctl->fd = fd;
  rc = hs_loop_io_start(loop, &ctl->io, fd, EPOLLIN, ctl_on_listen, ctl);
  if (rc != 0) {
    free(ctl->path);
    ctl->path = NULL;
    ctl->fd = -1;
    return hs_error_set(err, rc, "control", "cannot watch %s: %s", path,
                        hs_strerror(rc));
  }
  return 0;
}

/*
 * Closes every connection, the listening socket, and unlinks the path.
 * Every hs_ctl_conn of ctl is invalid afterwards, also those whose handler
 * still owes a reply: their replies are dropped, and the handler's owner
 * must not call hs_ctl_reply on them (stop ctl only after forgetting its
 * pending conns). Harmless on a stopped ctl or one whose start failed.
 */
void hs_ctl_stop(hs_ctl *ctl) {
  while (ctl->conns)
    conn_close(ctl->conns);
  if (ctl->fd >= 0) {
    hs_loop_io_stop(&ctl->io);
    close(ctl->fd);
    ctl->fd = -1;
  }
  if (ctl->path) {
    unlink(ctl->path);
    free(ctl->path);
    ctl->path = NULL;
  }
}

/*
 * Queues "ok\n" or "error\n" and body on conn and sends as much as the
 * socket takes; the rest goes out from the loop. conn is closed once all is
 * sent or the client is gone (no signal is raised), and is invalid when
 * this returns. Call once per conn, from the loop's thread.
 */
void hs_ctl_reply(hs_ctl_conn *conn, int ok, const char *body, size_t len) {
  hs_ctl_conn *c = conn;

  hs_loop_io_stop(&c->io);
  hs_buf_reset(&c->out);
  hs_buf_puts(&c->out, ok ? "ok\n" : "error\n");
  if (len)
    hs_buf_append(&c->out, body, len);
  if (c->out.oom) {
    conn_close(c);
    return;
  }
  c->sent = 0;
  if (conn_flush(c))
    return;
  if (hs_loop_io_start(c->ctl->loop, &c->io, c->fd, EPOLLOUT,
                       conn_on_writable, c) != 0)
    conn_close(c);
}

/*
 * Returns the default control socket path; see ctl.h. The caller frees it.
 */
char *hs_ctl_default_path(void) {
  const char *env = getenv("HOTSWAP_CONTROL");
  char *path = NULL;
  int n;

  if (env && *env)
    return strdup(env);
  env = getenv("XDG_RUNTIME_DIR");
  if (env && *env)
    n = asprintf(&path, "%s/hotswap/control.sock", env);
  else
    n = asprintf(&path, "/tmp/hotswap-%u/control.sock", (unsigned)geteuid());
  return n < 0 ? NULL : path;
}
