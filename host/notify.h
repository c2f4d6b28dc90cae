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
 *                                restarted host gets it back: "control",
 *                                or "<plugin>.<name>" (hs_api.fd_keep)
 *   FDSTOREREMOVE=1 + FDNAME=    when such a socket is closed for good
 *
 * The fds systemd hands a restarted host ($LISTEN_FDS) wait in a table in
 * hs_notify until they are taken by name (hs_notify_take); the ones nobody
 * takes are closed and dropped from the store (hs_notify_drop_untaken).
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

/* The longest fd name systemd accepts (FDNAME=). */
#define HS_NOTIFY_FDNAME_MAX 255

/* An fd systemd passed at start, until it is taken. */
typedef struct hs_notify_fd {
  int fd;     /* 3, 4, ...; -1 once taken or closed */
  char *name; /* its name in $LISTEN_FDNAMES, "unknown" when none */
} hs_notify_fd;

typedef struct hs_notify {
  int fd;                  /* SOCK_DGRAM socket, -1 when inactive */
  struct sockaddr_un addr; /* where $NOTIFY_SOCKET points */
  socklen_t addrlen;       /* its length (abstract names have no NUL) */
  hs_notify_fd *passed;    /* fds from $LISTEN_FDS (hs_notify_listen_fds) */
  size_t npassed;
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
 * Sends "FDSTORE=1\nFDNAME=<name>" with fd: systemd keeps a duplicate
 * under name. Returns 0 (also when inactive), HS_EINVAL for a name
 * hs_notify_fdname_valid refuses or fd < 0, or what hs_notify_send_fds
 * returns.
 */
int hs_notify_store(hs_notify *n, const char *name, int fd);

/* Sends "FDSTOREREMOVE=1\nFDNAME=<name>": systemd closes what it keeps
 * under name. Returns as hs_notify_store. */
int hs_notify_unstore(hs_notify *n, const char *name);

/* 1 if systemd accepts name as an FDNAME: 1 to HS_NOTIFY_FDNAME_MAX
 * printable ASCII characters, no ':' (it separates $LISTEN_FDNAMES). */
int hs_notify_fdname_valid(const char *name);

/*
 * Adopts the fds systemd handed this process (sd_listen_fds(3):
 * $LISTEN_PID is our pid, $LISTEN_FDS fds from 3 on, $LISTEN_FDNAMES their
 * names separated by ':'), e.g. "control" from the fd store after a
 * restart, into n's table. Each is made close-on-exec. The three variables
 * are removed from the environment in any case, so that neither children
 * nor this process re-executed (same pid) take the numbers for theirs.
 * Returns the number of fds adopted (0 without any, or when $LISTEN_PID is
 * another process), or HS_ENOMEM (the fds are then closed). Call once,
 * after hs_notify_init and before anything opens fds; works also when n is
 * inactive.
 */
int hs_notify_listen_fds(hs_notify *n);

/* The adopted fd named name, handed out once: the caller owns it. Returns
 * the fd, or HS_ENOENT when there is none (left). */
int hs_notify_take(hs_notify *n, const char *name);

/*
 * Closes every adopted fd nobody took, logs each (info, event "fdstore")
 * and takes its name out of the store (FDSTOREREMOVE), so that the next
 * restart does not hand it back either. Returns how many it closed. Call
 * once everyone who may take one has had the chance.
 */
int hs_notify_drop_untaken(hs_notify *n);

/* Closes the socket and every adopted fd not taken (quietly; the store
 * keeps them); n becomes inactive. Harmless when inactive. */
void hs_notify_close(hs_notify *n);

#endif /* HS_NOTIFY_H */
