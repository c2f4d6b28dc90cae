/*
 * ctl.h - the control socket: a unix stream socket (mode 0600, in a 0700
 * directory) that accepts one request per connection from our own user
 * (SO_PEERCRED; other users are refused) and sends one reply.
 *
 * Request: one line, "COMMAND[ ARG]\n" (at most 4096 bytes).
 * Reply:   "ok\n" or "error\n", then the body; the host closes after it.
 */
#ifndef HS_CTL_H
#define HS_CTL_H

#include <stddef.h>

#include "buf.h"
#include "err.h"
#include "loop.h"

typedef struct hs_ctl hs_ctl;
typedef struct hs_ctl_conn hs_ctl_conn; /* private */

/* Handles one request. cmd is the first word, arg the rest (or ""). The
 * handler must call hs_ctl_reply on conn exactly once, now or later from
 * the loop. */
typedef void (*hs_ctl_handler)(hs_ctl *ctl, hs_ctl_conn *conn,
                               const char *cmd, const char *arg, void *data);

struct hs_ctl {
  hs_loop *loop;
  char *path;            /* owned: socket path */
  int fd;                /* listening socket */
  hs_io io;
  hs_ctl_conn *conns;    /* open connections */
  hs_ctl_handler handler;
  void *data;            /* the handler's */
};

/*
 * Listens on path (its directory is created 0700 if missing). If another
 * live host answers on path, fails with HS_EBUSY ("control socket ... is in
 * use by pid N; pass --control"); a stale socket is replaced. Returns 0 or
 * a negative code with err filled (stage "control").
 */
int hs_ctl_start(hs_ctl *ctl, hs_loop *loop, const char *path,
                 hs_ctl_handler handler, void *data, hs_error *err);

/*
 * Like hs_ctl_start, on a listening socket handed over by systemd (its fd
 * store, after a restart): fd must be a listening unix stream socket bound
 * to path. Connections that queued while no host ran are served. Returns 0,
 * or HS_EINVAL naming what is wrong with fd (which stays the caller's).
 */
int hs_ctl_adopt(hs_ctl *ctl, hs_loop *loop, int fd, const char *path,
                 hs_ctl_handler handler, void *data, hs_error *err);

/* Closes every connection (pending replies are dropped), the socket, and
 * unlinks path. */
void hs_ctl_stop(hs_ctl *ctl);

/* Sends "ok\n" (ok = 1) or "error\n" and body, then closes conn. conn is
 * invalid afterwards. */
void hs_ctl_reply(hs_ctl_conn *conn, int ok, const char *body, size_t len);

/* Returns the default control socket path (owned by the caller):
 * $HOTSWAP_CONTROL, else $XDG_RUNTIME_DIR/hotswap/control.sock, else
 * /tmp/hotswap-<uid>/control.sock. NULL on out of memory. */
char *hs_ctl_default_path(void);

/*
 * Client side: sends "cmd arg\n" to the host at path and waits up to
 * timeout_ms for the reply; on success reply holds the body and *ok the
 * host's verdict. Returns 0, or a negative code with err filled ("no
 * hotswap host is listening on ...").
 */
int hs_ctl_request(const char *path, const char *cmd, const char *arg,
                   int timeout_ms, hs_buf *reply, int *ok, hs_error *err);

#endif /* HS_CTL_H */
