/*
 * echo.c - a TCP line-echo server that keeps its connections across
 * reloads. Each complete line a client sends ("abc\n") comes back prefixed
 * with the version that answered it ("1.0: abc\n"). Edit ECHO_VERSION and
 * save while a client is connected: the next line on the same connection
 * is answered by the new version, and a line half sent before the reload
 * is completed after it.
 *
 * How: the listening socket, every connection's fd, its unanswered input
 * and its unsent output live in the state the host keeps (plain integers
 * and fixed arrays, no pointers). The fds are registered with the host
 * (api->io_watch), which keeps the registrations across reloads and sends
 * their events to whichever version is live.
 *
 * Configuration: an optional plugins/echo.conf (none ships; these are the
 * defaults):
 *
 *   address = 127.0.0.1   # IPv4 address to listen on
 *   port = 7007           # 0: any free port (the log names the one chosen)
 *
 * A change to echo.conf is seen at once (on_config): the listener moves to
 * the new address/port; connections already open stay open.
 *
 * Limits: 64 connections (more are accepted and closed at once) and lines
 * of at most 1023 bytes plus the newline. A longer line gets the reply
 * "<version>: error: line too long" and the connection is closed.
 * A "\r" before the newline is dropped.
 *
 * The host's upgrade (re-exec) carries every fd with its number, so it is
 * like a reload: clients stay connected. Under systemd the listening
 * socket is also kept in the fd store (api->fd_keep): if the host crashes,
 * systemd restarts it with that socket (api->fd_take), so clients that
 * connect meanwhile wait instead of being refused (connected clients are
 * lost with the crashed host).
 *
 * Try it:  ./dev run   then   nc 127.0.0.1 7007
 */
#define _GNU_SOURCE /* accept4 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hotswap.h"

/* ---- edit this, save, and the next reply carries the new version ------ */
#define ECHO_VERSION "1.0"
/* ----------------------------------------------------------------------- */

#define ECHO_DEFAULT_ADDRESS "127.0.0.1"
#define ECHO_DEFAULT_PORT 7007
#define ECHO_CONNS 64        /* connection table */
#define ECHO_LINE_MAX 1024   /* input buffer: one line with its newline */
#define ECHO_OUT_MAX 2048    /* output buffer: replies not yet sent */
#define ECHO_DRAIN_MAX 65536 /* bytes read and dropped before a close */
#define ECHO_ROUNDS 64       /* read/reply rounds per event, for fairness */

/* closing: what happens once the output is sent. */
enum { ECHO_OPEN = 0, ECHO_SHUTDOWN = 1, ECHO_DRAINING = 2 };

/* A reply (version, ": ", a whole line) always fits the emptied output. */
_Static_assert(sizeof(ECHO_VERSION) + 32 + ECHO_LINE_MAX <= ECHO_OUT_MAX,
               "ECHO_VERSION is too long for the output buffer");

typedef struct echo_conn {
  int32_t fd1;           /* the connection's fd + 1; 0: slot free */
  uint32_t events;       /* HS_IO_* interest registered with the host */
  uint32_t closing;      /* ECHO_OPEN, ECHO_SHUTDOWN or ECHO_DRAINING */
  uint32_t in_len;       /* bytes in in[] */
  uint32_t out_len;      /* bytes in out[] */
  uint32_t out_off;      /* of which sent */
  uint32_t drained;      /* bytes dropped while draining */
  char in[ECHO_LINE_MAX];  /* input not yet answered (a partial line) */
  char out[ECHO_OUT_MAX];  /* replies not yet sent */
} echo_conn;

typedef struct echo_state {
  int32_t listen_fd1;    /* the listening socket's fd + 1; 0: none */
  uint32_t cfg_port;     /* the configured port (0: any) */
  uint32_t port;         /* the port actually bound */
  char address[16];      /* the configured IPv4 address, dotted */
  uint64_t accepted;     /* connections accepted, across versions */
  uint64_t refused;      /* connections closed because the table was full */
  uint64_t lines;        /* lines answered */
  echo_conn conn[ECHO_CONNS];
} echo_state;

static const hs_api *api;

/* ---- the line protocol: pure functions over a connection's buffers ---- */

/* Appends one reply for the first complete line of c->in to c->out and
 * drops that line from c->in. Returns 1 when it replied, 0 when c->in holds
 * no complete line (or c->out has no room for the reply), -1 when c->in is
 * full without a newline (the line is too long; c->out gets the error). */
static int echo_reply(echo_conn *c) {
  static const char prefix[] = ECHO_VERSION ": ";
  static const char too_long[] = ECHO_VERSION ": error: line too long\n";
  const char *nl = memchr(c->in, '\n', c->in_len);

  if (!nl) {
    if (c->in_len < sizeof(c->in))
      return 0;
    if (c->out_len + sizeof(too_long) - 1 > sizeof(c->out))
      return 0;
    memcpy(c->out + c->out_len, too_long, sizeof(too_long) - 1);
    c->out_len += (uint32_t)(sizeof(too_long) - 1);
    c->in_len = 0;
    return -1;
  }
  size_t line = (size_t)(nl - c->in), text = line;
  if (text > 0 && c->in[text - 1] == '\r')
    text--;
  size_t need = sizeof(prefix) - 1 + text + 1;
  if (c->out_len + need > sizeof(c->out))
    return 0;
  memcpy(c->out + c->out_len, prefix, sizeof(prefix) - 1);
  memcpy(c->out + c->out_len + sizeof(prefix) - 1, c->in, text);
  c->out[c->out_len + need - 1] = '\n';
  c->out_len += (uint32_t)need;
  c->in_len -= (uint32_t)(line + 1);
  memmove(c->in, nl + 1, c->in_len);
  return 1;
}

/* ---- configuration ---------------------------------------------------- */

/* Reads address and port from echo.conf (defaults where absent; a bad
 * value is logged and the default used). */
static void read_config(hs_ctx *ctx, char address[16], uint32_t *port) {
  const char *a = api->config_get(ctx, "address");
  const char *p = api->config_get(ctx, "port");
  struct in_addr in;

  strcpy(address, ECHO_DEFAULT_ADDRESS);
  *port = ECHO_DEFAULT_PORT;
  if (a && strlen(a) < 16 && inet_pton(AF_INET, a, &in) == 1)
    strcpy(address, a);
  else if (a)
    api->log(ctx, HS_LOG_WARN, "echo.conf: address \"%s\" is not an IPv4 "
             "address; using %s", a, ECHO_DEFAULT_ADDRESS);
  if (p) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(p, &end, 10);
    if (*p >= '0' && *p <= '9' && *end == '\0' && errno == 0 && v <= 65535)
      *port = (uint32_t)v;
    else
      api->log(ctx, HS_LOG_WARN, "echo.conf: port \"%s\" is not 0..65535; "
               "using %d", p, ECHO_DEFAULT_PORT);
  }
}

/* ---- sockets ---------------------------------------------------------- */

/* Opens, binds and watches a listening socket on address:port. Returns the
 * fd (the bound port in *bound) or a negative code, logged. */
static int listen_open(hs_ctx *ctx, const char *address, uint32_t port,
                       uint32_t *bound) {
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  int one = 1, rc;

  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, address, &sa.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    rc = -errno;
  else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
           bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
           listen(fd, 64) != 0 ||
           getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
    rc = -errno;
  else if ((rc = api->io_watch(ctx, fd, HS_IO_READ, 0)) == 0) {
    *bound = ntohs(sa.sin_port);
    return fd;
  }
  if (fd >= 0)
    close(fd);
  api->log(ctx, HS_LOG_ERROR, "cannot listen on %s:%" PRIu32 ": %s", address,
           port, strerror(-rc));
  return rc;
}

/* The listening socket a host that ran before this one (and crashed) kept
 * in systemd's fd store, if the host has it and it is on address:port (any
 * port for 0): watched, its port in *bound. Returns the fd, or -1 (then
 * closed) when there is none or it does not fit. Needs ABI 3. */
static int listen_take(hs_ctx *ctx, const char *address, uint32_t port,
                       uint32_t *bound) {
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  char have[16];

  if (api->abi_version < 3)
    return -1;
  int fd = api->fd_take(ctx, "listen");
  if (fd < 0)
    return -1;
  if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0 ||
      sa.sin_family != AF_INET ||
      !inet_ntop(AF_INET, &sa.sin_addr, have, sizeof(have)) ||
      strcmp(have, address) != 0 ||
      (port != 0 && ntohs(sa.sin_port) != port)) {
    api->log(ctx, HS_LOG_INFO, "the listening socket from systemd's fd store "
             "is not on %s:%" PRIu32 "; opening a new one", address, port);
    close(fd);
    return -1;
  }
  /* As it was kept: made non-blocking here, for accept_all. */
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
      api->io_watch(ctx, fd, HS_IO_READ, 0) != 0) {
    close(fd);
    return -1;
  }
  *bound = ntohs(sa.sin_port);
  return fd;
}

/* Keeps the listening socket in systemd's fd store (ABI 3), so that a host
 * restarted after a crash gets it back: no connection is refused meanwhile.
 * Without systemd the host only notes the name. */
static void listen_keep(hs_ctx *ctx, echo_state *s) {
  if (api->abi_version < 3 || !s->listen_fd1)
    return;
  int rc = api->fd_keep(ctx, s->listen_fd1 - 1, "listen");
  if (rc != 0)
    api->log(ctx, HS_LOG_WARN, "cannot keep the listening socket in the fd "
             "store: %s", strerror(-rc));
}

/* Opens the listener the configuration asks for; the old one, if any, is
 * closed only once the new one works. may_take (a first load): the one
 * from systemd's fd store if it is on that address and port. */
static void listen_update(hs_ctx *ctx, echo_state *s, int may_take) {
  char address[16];
  uint32_t port, bound = 0;

  read_config(ctx, address, &port);
  if (s->listen_fd1 && port == s->cfg_port &&
      strcmp(address, s->address) == 0) {
    listen_keep(ctx, s); /* kept already, unless an older version opened it */
    return;
  }
  int fd = may_take ? listen_take(ctx, address, port, &bound) : -1;
  const char *from = fd >= 0 ? " (the socket from systemd's fd store)" : "";
  if (fd < 0 && (fd = listen_open(ctx, address, port, &bound)) < 0)
    return;
  if (s->listen_fd1)
    api->io_close(ctx, s->listen_fd1 - 1); /* leaves the fd store too */
  s->listen_fd1 = fd + 1;
  s->cfg_port = port;
  s->port = bound;
  strcpy(s->address, address);
  listen_keep(ctx, s);
  api->log(ctx, HS_LOG_INFO, "listening on %s:%" PRIu32 "%s", s->address,
           s->port, from);
}

static void conn_close(hs_ctx *ctx, echo_state *s, unsigned i) {
  echo_conn *c = &s->conn[i];
  if (c->fd1)
    api->io_close(ctx, c->fd1 - 1);
  memset(c, 0, sizeof(*c));
}

/* Registers interest in events (one of HS_IO_READ, HS_IO_WRITE). */
static void conn_want(hs_ctx *ctx, echo_state *s, unsigned i, uint32_t ev) {
  echo_conn *c = &s->conn[i];
  if (c->events == ev)
    return;
  if (api->io_watch(ctx, c->fd1 - 1, ev, i + 1) != 0) {
    conn_close(ctx, s, i);
    return;
  }
  c->events = ev;
}

/* Sends, replies and reads until the socket would block. */
static void conn_run(hs_ctx *ctx, echo_state *s, unsigned i) {
  echo_conn *c = &s->conn[i];
  int fd = c->fd1 - 1;
  char sink[4096];

  int rounds;
  for (rounds = 0; rounds < ECHO_ROUNDS; rounds++) {
    while (c->out_off < c->out_len) {
      ssize_t n = send(fd, c->out + c->out_off, c->out_len - c->out_off,
                       MSG_NOSIGNAL);
      if (n > 0) {
        c->out_off += (uint32_t)n;
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        conn_want(ctx, s, i, HS_IO_WRITE);
        return;
      } else {
        conn_close(ctx, s, i);
        return;
      }
    }
    c->out_off = c->out_len = 0;
    if (c->closing == ECHO_SHUTDOWN) {
      /* Half-close, then read until the peer closes: closing with unread
       * input would reset the connection and could lose the reply. */
      shutdown(fd, SHUT_WR);
      c->closing = ECHO_DRAINING;
    }
    if (c->closing == ECHO_OPEN) {
      int r, replied = 0;
      while ((r = echo_reply(c)) == 1) {
        s->lines++;
        replied = 1;
      }
      if (r < 0) {
        c->closing = ECHO_SHUTDOWN;
        continue;
      }
      if (replied)
        continue;
    }
    char *dst = c->closing ? sink : c->in + c->in_len;
    size_t room = c->closing ? sizeof(sink) : sizeof(c->in) - c->in_len;
    ssize_t n = recv(fd, dst, room, 0);
    if (n > 0) {
      if (!c->closing)
        c->in_len += (uint32_t)n;
      else if ((c->drained += (uint32_t)n) > ECHO_DRAIN_MAX)
        break; /* a peer that keeps sending: enough */
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      conn_want(ctx, s, i, HS_IO_READ);
      return;
    }
    break; /* end of file (a partial line is dropped) or an error */
  }
  if (rounds == ECHO_ROUNDS && c->drained <= ECHO_DRAIN_MAX) {
    /* Out of rounds: come back when the socket is writable (at once,
     * usually), so that buffered lines are answered even if no more input
     * arrives. */
    conn_want(ctx, s, i, HS_IO_WRITE);
    return;
  }
  conn_close(ctx, s, i);
}

static void accept_all(hs_ctx *ctx, echo_state *s) {
  for (int k = 0; k < ECHO_CONNS; k++) {
    int fd = accept4(s->listen_fd1 - 1, NULL, NULL,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      return; /* EAGAIN, or an error the next event retries */
    unsigned i;
    for (i = 0; i < ECHO_CONNS && s->conn[i].fd1; i++) {
    }
    if (i == ECHO_CONNS) {
      close(fd); /* never registered: a plain close */
      s->refused++;
      continue;
    }
    if (api->io_watch(ctx, fd, HS_IO_READ, i + 1) != 0) {
      close(fd);
      continue;
    }
    memset(&s->conn[i], 0, sizeof(s->conn[i]));
    s->conn[i].fd1 = fd + 1;
    s->conn[i].events = HS_IO_READ;
    s->accepted++;
  }
}

/* ---- callbacks -------------------------------------------------------- */

static int echo_load(hs_ctx *ctx, void *state, hs_load_reason reason) {
  echo_state *s = state;
  unsigned open = 0;

  if (api->abi_version < 2) {
    api->log(ctx, HS_LOG_ERROR, "needs a host with ABI 2 (event services)");
    return HS_EABI;
  }
  if (api->in_sandbox(ctx))
    return 0; /* the live fds do not exist here */
  /* After a reload, an upgrade (the re-executed host carries every fd, same
   * numbers) or a rollback the fds in the state are live: a listener opens
   * only if none is. */
  listen_update(ctx, s, reason == HS_LOAD_START);
  for (unsigned i = 0; i < ECHO_CONNS; i++)
    open += s->conn[i].fd1 != 0;
  if (reason != HS_LOAD_START)
    api->log(ctx, HS_LOG_INFO, "version %s: serving %s:%" PRIu32 ", %u "
             "connections kept, %" PRIu64 " lines answered so far",
             ECHO_VERSION, s->address, s->port, open, s->lines);
  return 0;
}

static void echo_unload(hs_ctx *ctx, void *state, hs_unload_reason reason) {
  echo_state *s = state;

  if (api->in_sandbox(ctx))
    return;
  if (reason == HS_UNLOAD_RELOAD || reason == HS_UNLOAD_UPGRADE)
    return; /* the next version takes the fds over */
  for (unsigned i = 0; i < ECHO_CONNS; i++)
    conn_close(ctx, s, i);
  if (s->listen_fd1)
    api->io_close(ctx, s->listen_fd1 - 1);
  s->listen_fd1 = 0;
}

static void echo_on_io(hs_ctx *ctx, void *state, int fd, uint32_t events,
                       uint64_t token) {
  echo_state *s = state;
  (void)events;

  if (token == 0 && s->listen_fd1 == fd + 1) {
    accept_all(ctx, s);
  } else if (token >= 1 && token <= ECHO_CONNS &&
             s->conn[token - 1].fd1 == fd + 1) {
    conn_run(ctx, s, (unsigned)(token - 1));
  } else {
    api->log(ctx, HS_LOG_DEBUG, "fd %d is not in the table; closed", fd);
    api->io_close(ctx, fd);
  }
}

static void echo_on_config(hs_ctx *ctx, void *state) {
  if (!api->in_sandbox(ctx))
    listen_update(ctx, state, 0);
}

/* Feeds text into a fresh connection and checks the replies. */
static int check(const char *in, size_t len, int want_rc, const char *want_out,
                 uint32_t want_left) {
  static echo_conn c;
  int r;

  memset(&c, 0, sizeof(c));
  memcpy(c.in, in, len);
  c.in_len = (uint32_t)len;
  while ((r = echo_reply(&c)) == 1) {
  }
  return r == want_rc && c.out_len == strlen(want_out) &&
         memcmp(c.out, want_out, c.out_len) == 0 && c.in_len == want_left;
}

static int echo_selftest(hs_ctx *ctx, void *state) {
  static char big[ECHO_LINE_MAX];
  const char *const V = ECHO_VERSION ": ";
  char two[64];
  (void)state;

  memset(big, 'x', sizeof(big));
  snprintf(two, sizeof(two), "%sabc\n%s\n", V, V);
  if (!check("abc\n\nde", 7, 0, two, 2) ||
      !check("abc\r\n\n", 6, 0, two, 0) ||
      !check("", 0, 0, "", 0) ||
      !check(big, sizeof(big), -1, ECHO_VERSION ": error: line too long\n",
             0)) {
    api->log(ctx, HS_LOG_ERROR, "selftest: the line parser is wrong");
    return HS_ESELFTEST;
  }
  return 0;
}

static const hs_plugin echo_plugin = {
    .abi_version = HS_ABI_VERSION,
    .size = sizeof(hs_plugin),
    .name = "echo",
    .version = ECHO_VERSION,
    .state_version = 1,
    .state_size = sizeof(echo_state),
    .load = echo_load,
    .unload = echo_unload,
    .selftest = echo_selftest,
    .on_io = echo_on_io,
    .on_config = echo_on_config,
};

HS_EXPORT const hs_plugin *hotswap_plugin_entry(const hs_api *host_api) {
  api = host_api;
  return &echo_plugin;
}
