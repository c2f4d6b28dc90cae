/*
 * ctl_client.c - the client side of the control socket: one request, one
 * reply, within a deadline.
 */
#include "ctl.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

/* A reply larger than this is not one of ours. */
#define HS_CTL_MAX_REPLY (64u << 20)

/* Milliseconds left until deadline (ns, monotonic); -1 for no deadline. */
static int ms_left(uint64_t deadline) {
  uint64_t now;

  if (deadline == 0)
    return -1;
  now = hs_now_ns();
  if (now >= deadline)
    return 0;
  if ((deadline - now + 999999) / 1000000 > INT_MAX)
    return INT_MAX;
  return (int)((deadline - now + 999999) / 1000000);
}

/* Waits for events on fd until deadline. Returns 1 when ready, 0 on
 * timeout, or -errno. */
static int wait_fd(int fd, short events, uint64_t deadline) {
  struct pollfd p = {.fd = fd, .events = events};
  int rc;

  for (;;) {
    rc = poll(&p, 1, ms_left(deadline));
    if (rc > 0)
      return 1;
    if (rc == 0)
      return 0;
    if (errno != EINTR)
      return -errno;
  }
}

static int no_host(const char *path, hs_error *err) {
  return hs_error_set(err, HS_ENOENT, "control",
                      "no hotswap host is listening on %s (is it running? "
                      "pass --control)",
                      path);
}

static int timed_out(const char *path, int timeout_ms, hs_error *err) {
  return hs_error_set(err, HS_ETIMEDOUT, "control",
                      "no reply from %s within %d ms", path, timeout_ms);
}

/* Connects fd to addr, waiting at most until deadline. */
static int do_connect(int fd, const struct sockaddr_un *addr,
                      uint64_t deadline, int timeout_ms, hs_error *err) {
  const char *path = addr->sun_path;

  /* A unix connect blocks only while the listener's backlog is full; the
   * send timeout bounds that wait. */
  if (deadline) {
    int ms = ms_left(deadline);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    if (tv.tv_sec == 0 && tv.tv_usec == 0)
      tv.tv_usec = 1000;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  while (connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0) {
    int e = errno;
    if (e == EINTR)
      continue;
    if (e == ENOENT || e == ECONNREFUSED)
      return no_host(path, err);
    if (e == EAGAIN || e == EWOULDBLOCK || e == EINPROGRESS)
      return timed_out(path, timeout_ms, err);
    if (e == EACCES)
      return hs_error_set(err, HS_EACCES, "control",
                          "cannot connect to %s: permission denied (is it "
                          "another user's hotswap?)",
                          path);
    return hs_error_set(err, -e, "control", "cannot connect to %s: %s", path,
                        strerror(e));
  }
  return 0;
}

/* Sends all of req. A host that closed early (it may have answered with an
 * error already) is not an error here: the reply tells. */
static int do_send(int fd, const char *path, const hs_buf *req,
                   uint64_t deadline, int timeout_ms, hs_error *err) {
  size_t off = 0;

  while (off < req->len) {
    ssize_t n = send(fd, req->data + off, req->len - off,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int rc = wait_fd(fd, POLLOUT, deadline);
      if (rc == 0)
        return timed_out(path, timeout_ms, err);
      if (rc < 0)
        return hs_error_set(err, rc, "control", "poll: %s", hs_strerror(rc));
      continue;
    }
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
      return 0;
    return hs_error_set(err, n < 0 ? -errno : HS_EIO, "control",
                        "cannot send to %s: %s", path,
                        n < 0 ? strerror(errno) : "nothing sent");
  }
  return 0;
}

/* Reads until the host closes. */
static int do_recv(int fd, const char *path, hs_buf *raw, uint64_t deadline,
                   int timeout_ms, hs_error *err) {
  char chunk[4096];

  for (;;) {
    ssize_t n = recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
    if (n > 0) {
      if (raw->len + (size_t)n > HS_CTL_MAX_REPLY)
        return hs_error_set(err, HS_EIO, "control",
                            "reply from %s is larger than %u bytes", path,
                            HS_CTL_MAX_REPLY);
      if (hs_buf_append(raw, chunk, (size_t)n) != 0)
        return hs_error_set(err, HS_ENOMEM, "control", "out of memory");
      continue;
    }
    if (n == 0)
      return 0;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      int rc = wait_fd(fd, POLLIN, deadline);
      if (rc == 0)
        return timed_out(path, timeout_ms, err);
      if (rc < 0)
        return hs_error_set(err, rc, "control", "poll: %s", hs_strerror(rc));
      continue;
    }
    /* The host closes with our request partly unread when it refuses it;
     * the reply before the reset is complete. */
    if (errno == ECONNRESET && raw->len > 0)
      return 0;
    return hs_error_set(err, -errno, "control", "cannot read from %s: %s",
                        path, strerror(errno));
  }
}

/* Splits raw into the verdict and the body. */
static int parse_reply(const char *path, const hs_buf *raw, hs_buf *reply,
                       int *ok, hs_error *err) {
  const char *nl = raw->len ? memchr(raw->data, '\n', raw->len) : NULL;
  size_t head;

  if (raw->len == 0)
    return hs_error_set(err, HS_EIO, "control",
                        "%s closed the connection without a reply", path);
  if (!nl)
    return hs_error_set(err, HS_EIO, "control",
                        "malformed reply from %s: no status line", path);
  head = (size_t)(nl - raw->data);
  if (head == 2 && memcmp(raw->data, "ok", 2) == 0)
    *ok = 1;
  else if (head == 5 && memcmp(raw->data, "error", 5) == 0)
    *ok = 0;
  else
    return hs_error_set(err, HS_EIO, "control",
                        "malformed reply from %s: status line is \"%.*s\", "
                        "not \"ok\" or \"error\"",
                        path, head > 40 ? 40 : (int)head, raw->data);
  hs_buf_reset(reply);
  if (hs_buf_append(reply, nl + 1, raw->len - head - 1) != 0)
    return hs_error_set(err, HS_ENOMEM, "control", "out of memory");
  return 0;
}

/*
 * Sends one request and reads the reply; see ctl.h. timeout_ms < 0 waits
 * forever. reply must be initialised; it is emptied, then holds the body.
 * cmd and arg must not contain a newline (HS_EINVAL). Errors have stage
 * "control": HS_ENOENT when nobody listens, HS_ETIMEDOUT, HS_EIO for a
 * malformed or missing reply, or -errno.
 */
int hs_ctl_request(const char *path, const char *cmd, const char *arg,
                   int timeout_ms, hs_buf *reply, int *ok, hs_error *err) {
  struct sockaddr_un addr;
  size_t len = strlen(path);
  uint64_t deadline = 0;
  hs_buf req, raw;
  int fd, rc;

  hs_error_clear(err);
  *ok = 0;
  if (len == 0 || len >= sizeof addr.sun_path)
    return hs_error_set(err, HS_EINVAL, "control",
                        "control socket path %s is %s (at most %zu bytes)",
                        path, len ? "too long" : "empty",
                        sizeof addr.sun_path - 1);
  if (strchr(cmd, '\n') || (arg && strchr(arg, '\n')))
    return hs_error_set(err, HS_EINVAL, "control",
                        "a control request must not contain a newline");
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path, len + 1);
  if (timeout_ms >= 0)
    deadline = hs_now_ns() + (uint64_t)timeout_ms * 1000000u;

  hs_buf_init(&req);
  hs_buf_init(&raw);
  hs_buf_puts(&req, cmd);
  if (arg && *arg)
    hs_buf_printf(&req, " %s", arg);
  hs_buf_puts(&req, "\n");
  if (req.oom) {
    hs_buf_free(&req);
    return hs_error_set(err, HS_ENOMEM, "control", "out of memory");
  }

  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    rc = hs_error_set(err, -errno, "control", "socket: %s", strerror(errno));
    goto out;
  }
  if ((rc = do_connect(fd, &addr, deadline, timeout_ms, err)) != 0)
    goto out;
  if ((rc = do_send(fd, path, &req, deadline, timeout_ms, err)) != 0)
    goto out;
  if ((rc = do_recv(fd, path, &raw, deadline, timeout_ms, err)) != 0)
    goto out;
  rc = parse_reply(path, &raw, reply, ok, err);

out:
  if (fd >= 0)
    close(fd);
  hs_buf_free(&req);
  hs_buf_free(&raw);
  return rc;
}
