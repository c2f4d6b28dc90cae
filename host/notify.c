/* notify.c - sd_notify(3)'s datagram protocol; see notify.h. */
#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Fills n->addr from $NOTIFY_SOCKET's value. Returns 0 or HS_EINVAL. */
static int parse_address(hs_notify *n, const char *v) {
  size_t len = strlen(v);

  memset(&n->addr, 0, sizeof(n->addr));
  n->addr.sun_family = AF_UNIX;
  if (v[0] == '@') {
    /* Abstract: a leading NUL, then the name, no terminator. */
    if (len < 2 || len > sizeof(n->addr.sun_path))
      return HS_EINVAL;
    memcpy(n->addr.sun_path + 1, v + 1, len - 1);
    n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    return 0;
  }
  if (v[0] != '/' || len >= sizeof(n->addr.sun_path))
    return HS_EINVAL;
  memcpy(n->addr.sun_path, v, len + 1);
  n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
  return 0;
}

int hs_notify_init(hs_notify *n) {
  const char *v = getenv("NOTIFY_SOCKET");
  int rc;

  memset(n, 0, sizeof(*n));
  n->fd = -1;
  if (v == NULL || v[0] == '\0')
    return 0;
  if ((rc = parse_address(n, v)) != 0)
    return rc;
  n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (n->fd < 0)
    return -errno;
  return 0;
}

int hs_notify_active(const hs_notify *n) { return n->fd >= 0; }

int hs_notify_send_fds(hs_notify *n, const char *msg, const int *fds,
                       size_t nfds) {
  union {
    char raw[CMSG_SPACE(HS_NOTIFY_FDS_MAX * sizeof(int))];
    struct cmsghdr align;
  } ctl;
  struct iovec iov;
  struct msghdr mh;
  ssize_t sent;

  if (n->fd < 0)
    return 0;
  if (nfds > HS_NOTIFY_FDS_MAX)
    return HS_EINVAL;
  for (size_t i = 0; i < nfds; i++)
    if (fds[i] < 0)
      return HS_EINVAL;
  memset(&mh, 0, sizeof(mh));
  iov.iov_base = (void *)msg; /* sendmsg does not write through it */
  iov.iov_len = strlen(msg);
  mh.msg_name = &n->addr;
  mh.msg_namelen = n->addrlen;
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (nfds > 0) {
    struct cmsghdr *c;
    memset(&ctl, 0, sizeof(ctl));
    mh.msg_control = ctl.raw;
    mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  }
  do
    sent = sendmsg(n->fd, &mh, MSG_NOSIGNAL);
  while (sent < 0 && errno == EINTR);
  return sent < 0 ? -errno : 0;
}

int hs_notify_send(hs_notify *n, const char *fmt, ...) {
  va_list ap;
  char *msg;
  int rc;

  if (n->fd < 0)
    return 0;
  va_start(ap, fmt);
  rc = vasprintf(&msg, fmt, ap);
  va_end(ap);
  if (rc < 0)
    return HS_ENOMEM;
  rc = hs_notify_send_fds(n, msg, NULL, 0);
  free(msg);
  return rc;
}

int hs_notify_fdname_valid(const char *name) {
  size_t len = strlen(name);

  if (len == 0 || len > HS_NOTIFY_FDNAME_MAX)
    return 0;
  for (const char *p = name; *p; p++)
    if (*p < ' ' || *p > '~' || *p == ':')
      return 0;
  return 1;
}

int hs_notify_store(hs_notify *n, const char *name, int fd) {
  char msg[32 + HS_NOTIFY_FDNAME_MAX];

  if (!hs_notify_fdname_valid(name) || fd < 0)
    return HS_EINVAL;
  snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
  return hs_notify_send_fds(n, msg, &fd, 1);
}

int hs_notify_unstore(hs_notify *n, const char *name) {
  if (!hs_notify_fdname_valid(name))
    return HS_EINVAL;
  return hs_notify_send(n, "FDSTOREREMOVE=1\nFDNAME=%s", name);
}

/* Closes the adopted fds not taken and frees the table. */
static void passed_free(hs_notify *n) {
  for (size_t i = 0; i < n->npassed; i++) {
    if (n->passed[i].fd >= 0)
      close(n->passed[i].fd);
    free(n->passed[i].name);
  }
  free(n->passed);
  n->passed = NULL;
  n->npassed = 0;
}

void hs_notify_close(hs_notify *n) {
  if (n->fd >= 0)
    close(n->fd);
  n->fd = -1;
  passed_free(n);
}

int hs_notify_listen_fds(hs_notify *n) {
  const char *pid = getenv("LISTEN_PID"), *nfds = getenv("LISTEN_FDS");
  const char *names = getenv("LISTEN_FDNAMES");
  long count = 0;
  int rc = 0;

  if (pid && nfds && strtol(pid, NULL, 10) == (long)getpid())
    count = strtol(nfds, NULL, 10);
  if (count > 1024)
    count = 1024; /* beyond any FileDescriptorStoreMax= in use */
  if (count > 0 &&
      (n->passed = calloc((size_t)count, sizeof(*n->passed))) != NULL) {
    const char *p = names ? names : "";
    n->npassed = (size_t)count;
    for (long i = 0; i < count; i++) {
      size_t len = strcspn(p, ":");
      n->passed[i].fd = 3 + (int)i;
      fcntl(n->passed[i].fd, F_SETFD, FD_CLOEXEC);
      n->passed[i].name = len ? strndup(p, len) : strdup("unknown");
      if (!n->passed[i].name)
        rc = HS_ENOMEM;
      p += len;
      if (*p == ':')
        p++;
    }
  } else if (count > 0) {
    rc = HS_ENOMEM;
    for (long i = 0; i < count; i++)
      close(3 + (int)i);
  }
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  if (rc != 0) {
    passed_free(n);
    return rc;
  }
  return (int)n->npassed;
}

int hs_notify_take(hs_notify *n, const char *name) {
  for (size_t i = 0; i < n->npassed; i++)
    if (n->passed[i].fd >= 0 && strcmp(n->passed[i].name, name) == 0) {
      int fd = n->passed[i].fd;
      n->passed[i].fd = -1;
      return fd;
    }
  return HS_ENOENT;
}

int hs_notify_drop_untaken(hs_notify *n) {
  int dropped = 0;

  for (size_t i = 0; i < n->npassed; i++) {
    hs_notify_fd *p = &n->passed[i];
    if (p->fd < 0)
      continue;
    hs_log(HS_LOG_INFO, NULL, "fdstore",
           "closed %s (fd %d) from systemd's fd store: nobody took it",
           p->name, p->fd);
    close(p->fd);
    p->fd = -1;
    hs_notify_unstore(n, p->name);
    dropped++;
  }
  return dropped;
}
