/*
 * notify.h - the systemd notification protocol (sd_notify(3)), written
 * here rather than linked from libsystemd: one datagram of "KEY=VALUE"
 * lines sent to the unix socket named by $NOTIFY_SOCKET, optionally with
 * file descriptors attached (SCM_RIGHTS) for the service's fd store.
 *
 * The messages the host sends (see contrib/hotswap.service):
 *   READY=1                      the first scan's plugins are loaded
 *   RELOADING=1 / READY=1        around a host upgrade
 *   STATUS=<one line>            a summary for "systemctl status"
 *   FDSTORE=1 + FDNAME=<name>    with a listening socket attached, so a
 *                                restarted host gets it back
 *
 * Without $NOTIFY_SOCKET (not run by systemd, or Type= is not notify) every
 * function is a no-op that returns 0. $NOTIFY_SOCKET is left in the
 * environment on purpose: a host that re-executes itself (an upgrade) is
 * still the service's main process and must be able to notify again. The
 * children the host spawns inherit it; they never send on it.
 */
#ifndef HS_NOTIFY_H
#define HS_NOTIFY_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "hotswap.h"

/* Most fds one message carries (the kernel's SCM_MAX_FD). */
#define HS_NOTIFY_FDS_MAX 253

typedef struct hs_notify {
  int fd;                  /* SOCK_DGRAM socket, -1 when inactive */
  struct sockaddr_un addr; /* where $NOTIFY_SOCKET points */
  socklen_t addrlen;       /* its length (abstract names have no NUL) */
} hs_notify;

/*
 * Reads $NOTIFY_SOCKET: an absolute path ("/run/systemd/notify") or an
 * abstract name ("@name"). Unset or empty: n is inactive and 0 returned.
 * Otherwise opens a SOCK_DGRAM | SOCK_CLOEXEC socket for it and returns 0.
 * Returns HS_EINVAL for any other form (relative path, "@" alone, "vsock:",
 * too long for sun_path) or -errno when socket() fails; n is then inactive.
 * Call once, before the other functions; pair with hs_notify_close.
 */
int hs_notify_init(hs_notify *n);

/* 1 when init found a socket to talk to, 0 otherwise. */
int hs_notify_active(const hs_notify *n);

/*
 * Sends one datagram, the printf-formatted fmt: newline-separated
 * assignments, e.g. hs_notify_send(n, "READY=1\nSTATUS=%d plugins live",
 * 3). Returns 0 (also when inactive), HS_ENOMEM, or -errno from sendmsg
 * (e.g. HS_ENOENT or -ECONNREFUSED when nobody listens any more).
 * Never blocks for long (a datagram to a local socket) and never raises
 * SIGPIPE.
 */
int hs_notify_send(hs_notify *n, const char *fmt, ...) HS_PRINTF_(2, 3);

/*
 * Sends msg with nfds file descriptors attached (SCM_RIGHTS), e.g.
 * msg "FDSTORE=1\nFDNAME=control" and the control socket's fd, which
 * systemd keeps in the service's fd store (FileDescriptorStoreMax= must be
 * > 0) and hands back as $LISTEN_FDS / $LISTEN_FDNAMES after a restart.
 * The fds stay ours: the receiver gets duplicates. nfds may be 0. Returns
 * 0 (also when inactive), HS_EINVAL for more than HS_NOTIFY_FDS_MAX fds or
 * an fd < 0, or -errno from sendmsg (-EBADF for a closed fd).
 */
int hs_notify_send_fds(hs_notify *n, const char *msg, const int *fds,
                       size_t nfds);

/*
 * The fd systemd handed this process under name (sd_listen_fds(3):
 * $LISTEN_PID is our pid, $LISTEN_FDS fds from 3 on, $LISTEN_FDNAMES their
 * names separated by ':'), e.g. "control" from the fd store after a
 * restart; -1 when there is none. Every fd handed over is made
 * close-on-exec, and the three variables are removed from the environment
 * so that children do not take them for theirs. Call once, at start.
 */
int hs_notify_listen_fd(const char *name);

/* Closes the socket; n becomes inactive. Harmless when inactive. */
void hs_notify_close(hs_notify *n);

#endif /* HS_NOTIFY_H */
