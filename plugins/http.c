/*
 * http.c - a small HTTP/1.1 server that keeps its connections, partly read
 * requests and its request counter across reloads. GET / (any path) answers
 * a page naming the version that served it and the request number:
 *
 *   hello from http 1.0, request 42
 *
 * Edit HTTP_VERSION and save while a browser or curl keeps a connection
 * open: the next request on that same connection is answered by the new
 * version, and the count goes on.
 *
 * How: the listening socket, every connection's fd, its unparsed input and
 * its unsent output live in the state the host keeps (plain integers and
 * fixed arrays, no pointers). The fds are registered with the host
 * (api->io_watch), which keeps the registrations across reloads and sends
 * their events to whichever version is live.
 *
 * Configuration: an optional plugins/http.conf (none ships; these are the
 * defaults):
 *
 *   address = 127.0.0.1   # IPv4 address to listen on
 *   port = 8080           # 0: any free port (the log names the one chosen)
 *
 * A change to http.conf is seen at once (on_config): the listener moves to
 * the new address/port; connections already open stay open.
 *
 * What it speaks, and what it refuses. Requests are hostile input: every
 * buffer is fixed and every length checked.
 *   - HTTP/1.0 and HTTP/1.1; keep-alive by default on 1.1 ("Connection:
 *     close" ends it), on 1.0 only with "Connection: keep-alive". Pipelined
 *     requests are answered in order, one at a time, from the 4 KiB input
 *     buffer.
 *   - GET only: any other well-formed method gets "405 Method Not Allowed".
 *   - No request bodies: "Content-Length: 0" is fine, any other length or
 *     a Transfer-Encoding is a 400 (a body cannot be skipped safely).
 *   - "400 Bad Request" for anything malformed: a bad request line (method,
 *     target not starting with '/', version other than HTTP/1.0 or 1.1,
 *     extra spaces), a header line without "name:", folded headers, bytes
 *     outside printable ASCII and tab, a bare CR, or a head (request line
 *     and headers) that does not fit 4 KiB. Host is not required.
 *   - After a 400 or 405 the connection is half-closed, read to its end and
 *     closed, so that the client gets the answer before the close.
 *   - 256 connections; more are accepted and closed at once. An idle
 *     connection stays open until the client closes it.
 * The host's upgrade (re-exec) carries every fd with its number, so it is
 * like a reload: connections and the counter stay. Under systemd the
 * listening socket is also kept in the fd store (api->fd_keep): if the
 * host crashes, systemd restarts it with that socket (api->fd_take), so
 * clients that connect meanwhile wait instead of being refused (open
 * connections and the counter are lost with the crashed host).
 *
 * Try it:  ./dev run   then   curl http://127.0.0.1:8080/
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

/* ---- edit this, save, and the next response carries the new version --- */
#define HTTP_VERSION "1.0"
/* ----------------------------------------------------------------------- */

#define HTTP_DEFAULT_ADDRESS "127.0.0.1"
#define HTTP_DEFAULT_PORT 8080
#define HTTP_CONNS 256       /* connection table */
#define HTTP_IN_MAX 4096     /* input buffer: the largest request head */
#define HTTP_OUT_MAX 1024    /* output buffer: one response */
#define HTTP_DRAIN_MAX 65536 /* bytes read and dropped before a close */
#define HTTP_ROUNDS 64       /* read/respond rounds per event, for fairness */
#define HTTP_METHOD_MAX 16   /* longest method token */
#define HTTP_TARGET_MAX 2048 /* longest request target */

/* closing: what happens once the output is sent. */
enum { HTTP_OPEN = 0, HTTP_SHUTDOWN = 1, HTTP_DRAINING = 2 };

/* http_parse()'s verdicts besides a head's length. */
enum { HTTP_MORE = 0, HTTP_BAD = -400, HTTP_NOT_ALLOWED = -405 };

typedef struct http_conn {
  int32_t fd1;           /* the connection's fd + 1; 0: slot free */
  uint32_t events;       /* HS_IO_* interest registered with the host */
  uint32_t closing;      /* HTTP_OPEN, HTTP_SHUTDOWN or HTTP_DRAINING */
  uint32_t in_len;       /* bytes in in[] */
  uint32_t out_len;      /* bytes in out[] */
  uint32_t out_off;      /* of which sent */
  uint32_t drained;      /* bytes dropped while draining */
  uint32_t requests;     /* requests answered on this connection */
  char in[HTTP_IN_MAX];  /* input not yet answered (a partial request) */
  char out[HTTP_OUT_MAX]; /* the response not yet sent */
} http_conn;

typedef struct http_state {
  int32_t listen_fd1;    /* the listening socket's fd + 1; 0: none */
  uint32_t cfg_port;     /* the configured port (0: any) */
  uint32_t port;         /* the port actually bound */
  char address[16];      /* the configured IPv4 address, dotted */
  uint64_t accepted;     /* connections accepted, across versions */
  uint64_t refused;      /* connections closed because the table was full */
  uint64_t requests;     /* requests answered with 200: the page's counter */
  uint64_t rejected;     /* requests answered with 400 or 405 */
  http_conn conn[HTTP_CONNS];
} http_state;

static const hs_api *api;

/* ---- the protocol: pure functions over a connection's buffers -------- */

/* A parsed request head: what the response depends on. */
typedef struct http_req {
  int keep_alive; /* the connection stays open after the response */
} http_req;

static int is_tchar(unsigned char ch) {
  return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
         (ch >= 'A' && ch <= 'Z') ||
         (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* 1 if s (n bytes) equals the lower-case word w, ignoring case. */
static int word_is(const char *s, size_t n, const char *w) {
  if (n != strlen(w))
    return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (ch >= 'A' && ch <= 'Z')
      ch = (char)(ch - 'A' + 'a');
    if (ch != w[i])
      return 0;
  }
  return 1;
}

/* The request line "METHOD SP /target SP HTTP/1.x" (n bytes, no EOL).
 * Returns 0 (with *v11 and *get set) or HTTP_BAD. */
static int parse_request_line(const char *l, size_t n, int *v11, int *get) {
  size_t m = 0, t;

  while (m < n && m <= HTTP_METHOD_MAX && is_tchar((unsigned char)l[m]))
    m++;
  if (m == 0 || m > HTTP_METHOD_MAX || m >= n || l[m] != ' ')
    return HTTP_BAD;
  t = m + 1;
  if (t >= n || l[t] != '/')
    return HTTP_BAD;
  while (t < n && l[t] > ' ' && l[t] < 0x7f)
    t++;
  if (t - (m + 1) > HTTP_TARGET_MAX || t >= n || l[t] != ' ')
    return HTTP_BAD;
  const char *v = l + t + 1;
  size_t vn = n - t - 1;
  if (vn != 8 || memcmp(v, "HTTP/1.", 7) != 0 || (v[7] != '0' && v[7] != '1'))
    return HTTP_BAD;
  *v11 = v[7] == '1';
  *get = m == 3 && memcmp(l, "GET", 3) == 0;
  return 0;
}

/* One header line "name: value" (n bytes, no EOL): notes what matters in
 * *close_tok, *keep_tok. Returns 0 or HTTP_BAD. */
static int parse_header(const char *l, size_t n, int *close_tok,
                        int *keep_tok) {
  size_t k = 0;

  while (k < n && is_tchar((unsigned char)l[k]))
    k++;
  if (k == 0 || k >= n || l[k] != ':')
    return HTTP_BAD; /* no name, no colon, space before it, obs-fold */
  const char *v = l + k + 1, *end = l + n;
  while (v < end && (*v == ' ' || *v == '\t'))
    v++;
  while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
    end--;
  size_t vn = (size_t)(end - v);
  if (word_is(l, k, "content-length")) {
    if (vn == 0)
      return HTTP_BAD;
    for (size_t i = 0; i < vn; i++)
      if (v[i] != '0')
        return HTTP_BAD; /* a digit other than 0, or not a number */
  } else if (word_is(l, k, "transfer-encoding")) {
    return HTTP_BAD;
  } else if (word_is(l, k, "connection")) {
    while (v < end) {
      const char *comma = memchr(v, ',', (size_t)(end - v));
      const char *te = comma ? comma : end, *ts = v;
      while (ts < te && (*ts == ' ' || *ts == '\t'))
        ts++;
      while (te > ts && (te[-1] == ' ' || te[-1] == '\t'))
        te--;
      if (word_is(ts, (size_t)(te - ts), "close"))
        *close_tok = 1;
      else if (word_is(ts, (size_t)(te - ts), "keep-alive"))
        *keep_tok = 1;
      v = comma ? comma + 1 : end;
    }
  }
  return 0;
}

/*
 * Parses the request head at the start of buf (len bytes of a buffer of
 * cap). Returns the head's length (> 0) with *req filled when it is
 * complete and acceptable; HTTP_MORE when more bytes are needed;
 * HTTP_BAD when it is malformed or cannot fit cap; HTTP_NOT_ALLOWED for a
 * well-formed request with a method other than GET. Lines end with LF or
 * CRLF. Reads only buf[0..len).
 */
static int http_parse(const char *buf, size_t len, size_t cap,
                      http_req *req) {
  size_t pos = 0;
  int v11 = 0, get = 0, close_tok = 0, keep_tok = 0;

  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)buf[i];
    if (ch >= 0x7f || (ch < ' ' && ch != '\t' && ch != '\r' && ch != '\n'))
      return HTTP_BAD;
    if (ch == '\r' && i + 1 < len && buf[i + 1] != '\n')
      return HTTP_BAD;
  }
  for (int line = 0;; line++) {
    const char *nl = memchr(buf + pos, '\n', len - pos);
    if (!nl)
      return len >= cap ? HTTP_BAD : HTTP_MORE;
    size_t end = (size_t)(nl - buf), lend = end;
    if (lend > pos && buf[lend - 1] == '\r')
      lend--;
    const char *l = buf + pos;
    size_t n = lend - pos;
    if (memchr(l, '\r', n) != NULL || memchr(l, '\t', line ? 0 : n) != NULL)
      return HTTP_BAD;
    pos = end + 1;
    if (line == 0) {
      if (parse_request_line(l, n, &v11, &get) != 0)
        return HTTP_BAD;
    } else if (n == 0) {
      break;
    } else if (parse_header(l, n, &close_tok, &keep_tok) != 0) {
      return HTTP_BAD;
    }
  }
  if (!get)
    return HTTP_NOT_ALLOWED;
  req->keep_alive = v11 ? !close_tok : keep_tok && !close_tok;
  return (int)pos;
}

/* Writes a whole response for status (200, 400 or 405) into c->out, which
 * is empty. count is the request number shown on a 200 page. */
static void http_respond(http_conn *c, int status, int keep_alive,
                         uint64_t count) {
  char body[256];
  const char *reason = "OK", *extra = "";
  int b;

  if (status == 200) {
    b = snprintf(body, sizeof(body),
                 "<!doctype html>\n<title>hotswap http</title>\n"
                 "<p>hello from http %s, request %" PRIu64 "</p>\n",
                 HTTP_VERSION, count);
  } else {
    reason = status == 405 ? "Method Not Allowed" : "Bad Request";
    extra = status == 405 ? "Allow: GET\r\n" : "";
    b = snprintf(body, sizeof(body), "%d %s\n", status, reason);
  }
  int n = snprintf(c->out, sizeof(c->out),
                   "HTTP/1.1 %d %s\r\n"
                   "Content-Type: %s\r\n"
                   "Content-Length: %d\r\n"
                   "%s"
                   "Connection: %s\r\n"
                   "\r\n"
                   "%s",
                   status, reason,
                   status == 200 ? "text/html; charset=utf-8" : "text/plain",
                   b, extra, keep_alive ? "keep-alive" : "close", body);
  c->out_len = n > 0 && (size_t)n < sizeof(c->out) ? (uint32_t)n : 0;
  c->out_off = 0;
}

/* Answers the first request in c->in, if there is one to answer: returns
 * 1 when c->out got a response (c->closing set when the connection ends
 * after it), 0 when more input is needed. */
static int http_serve(http_conn *c, http_state *s) {
  http_req req = {0};
  int r = http_parse(c->in, c->in_len, sizeof(c->in), &req);

  if (r == HTTP_MORE)
    return 0;
  if (r < 0) {
    s->rejected++;
    http_respond(c, -r, 0, 0);
    c->in_len = 0;
    c->closing = HTTP_SHUTDOWN;
    return 1;
  }
  s->requests++;
  c->requests++;
  http_respond(c, 200, req.keep_alive, s->requests);
  c->in_len -= (uint32_t)r;
  memmove(c->in, c->in + r, c->in_len);
  if (!req.keep_alive)
    c->closing = HTTP_SHUTDOWN;
  return 1;
}
/* ---- configuration ---------------------------------------------------- */

/* Reads address and port from http.conf (defaults where absent; a bad
 * value is logged and the default used). */
static void read_config(hs_ctx *ctx, char address[16], uint32_t *port) {
  const char *a = api->config_get(ctx, "address");
  const char *p = api->config_get(ctx, "port");
  struct in_addr in;

  strcpy(address, HTTP_DEFAULT_ADDRESS);
  *port = HTTP_DEFAULT_PORT;
  if (a && strlen(a) < 16 && inet_pton(AF_INET, a, &in) == 1)
    strcpy(address, a);
  else if (a)
    api->log(ctx, HS_LOG_WARN, "http.conf: address \"%s\" is not an IPv4 "
             "address; using %s", a, HTTP_DEFAULT_ADDRESS);
  if (p) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(p, &end, 10);
    if (*p >= '0' && *p <= '9' && *end == '\0' && errno == 0 && v <= 65535)
      *port = (uint32_t)v;
    else
      api->log(ctx, HS_LOG_WARN, "http.conf: port \"%s\" is not 0..65535; "
               "using %d", p, HTTP_DEFAULT_PORT);
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
static void listen_keep(hs_ctx *ctx, http_state *s) {
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
static void listen_update(hs_ctx *ctx, http_state *s, int may_take) {
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

static void conn_close(hs_ctx *ctx, http_state *s, unsigned i) {
  http_conn *c = &s->conn[i];
  if (c->fd1)
    api->io_close(ctx, c->fd1 - 1);
  memset(c, 0, sizeof(*c));
}

/* Registers interest in events (one of HS_IO_READ, HS_IO_WRITE). */
static void conn_want(hs_ctx *ctx, http_state *s, unsigned i, uint32_t ev) {
  http_conn *c = &s->conn[i];
  if (c->events == ev)
    return;
  if (api->io_watch(ctx, c->fd1 - 1, ev, i + 1) != 0) {
    conn_close(ctx, s, i);
    return;
  }
  c->events = ev;
}

/* Sends, replies and reads until the socket would block. */
static void conn_run(hs_ctx *ctx, http_state *s, unsigned i) {
  http_conn *c = &s->conn[i];
  int fd = c->fd1 - 1;
  char sink[4096];

  int rounds;
  for (rounds = 0; rounds < HTTP_ROUNDS; rounds++) {
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
    if (c->closing == HTTP_SHUTDOWN) {
      /* Half-close, then read until the peer closes: closing with unread
       * input would reset the connection and could lose the reply. */
      shutdown(fd, SHUT_WR);
      c->closing = HTTP_DRAINING;
    }
    if (c->closing == HTTP_OPEN && http_serve(c, s))
      continue;
    char *dst = c->closing ? sink : c->in + c->in_len;
    size_t room = c->closing ? sizeof(sink) : sizeof(c->in) - c->in_len;
    ssize_t n = recv(fd, dst, room, 0);
    if (n > 0) {
      if (!c->closing)
        c->in_len += (uint32_t)n;
      else if ((c->drained += (uint32_t)n) > HTTP_DRAIN_MAX)
        break; /* a peer that keeps sending: enough */
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      conn_want(ctx, s, i, HS_IO_READ);
      return;
    }
    break; /* end of file (a partial request is dropped) or an error */
  }
  if (rounds == HTTP_ROUNDS && c->drained <= HTTP_DRAIN_MAX) {
    /* Out of rounds: come back when the socket is writable (at once,
     * usually), so that pipelined requests are answered even if no more
     * input     * arrives. */
    conn_want(ctx, s, i, HS_IO_WRITE);
    return;
  }
  conn_close(ctx, s, i);
}

static void accept_all(hs_ctx *ctx, http_state *s) {
  for (int k = 0; k < HTTP_CONNS; k++) {
    int fd = accept4(s->listen_fd1 - 1, NULL, NULL,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      return; /* EAGAIN, or an error the next event retries */
    unsigned i;
    for (i = 0; i < HTTP_CONNS && s->conn[i].fd1; i++) {
    }
    if (i == HTTP_CONNS) {
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

static int http_load(hs_ctx *ctx, void *state, hs_load_reason reason) {
  http_state *s = state;
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
  for (unsigned i = 0; i < HTTP_CONNS; i++)
    open += s->conn[i].fd1 != 0;
  if (reason != HS_LOAD_START)
    api->log(ctx, HS_LOG_INFO, "version %s: serving %s:%" PRIu32 ", %u "
             "connections kept, %" PRIu64 " requests served so far",
             HTTP_VERSION, s->address, s->port, open, s->requests);
  return 0;
}

static void http_unload(hs_ctx *ctx, void *state, hs_unload_reason reason) {
  http_state *s = state;

  if (api->in_sandbox(ctx))
    return;
  if (reason == HS_UNLOAD_RELOAD || reason == HS_UNLOAD_UPGRADE)
    return; /* the next version takes the fds over */
  for (unsigned i = 0; i < HTTP_CONNS; i++)
    conn_close(ctx, s, i);
  if (s->listen_fd1)
    api->io_close(ctx, s->listen_fd1 - 1);
  s->listen_fd1 = 0;
}

static void http_on_io(hs_ctx *ctx, void *state, int fd, uint32_t events,
                       uint64_t token) {
  http_state *s = state;
  (void)events;

  if (token == 0 && s->listen_fd1 == fd + 1) {
    accept_all(ctx, s);
  } else if (token >= 1 && token <= HTTP_CONNS &&
             s->conn[token - 1].fd1 == fd + 1) {
    conn_run(ctx, s, (unsigned)(token - 1));
  } else {
    api->log(ctx, HS_LOG_DEBUG, "fd %d is not in the table; closed", fd);
    api->io_close(ctx, fd);
  }
}

static void http_on_config(hs_ctx *ctx, void *state) {
  if (!api->in_sandbox(ctx))
    listen_update(ctx, state, 0);
}

/* The parser's verdict on text (len bytes) in an empty 4 KiB buffer; the
 * head length, HTTP_MORE, HTTP_BAD or HTTP_NOT_ALLOWED, with keep-alive in
 * *keep. */
static int parse_text(const char *text, size_t len, int *keep) {
  static http_conn c;
  http_req req = {0};

  memset(&c, 0, sizeof(c));
  memcpy(c.in, text, len);
  int r = http_parse(c.in, len, sizeof(c.in), &req);
  *keep = req.keep_alive;
  return r;
}

#define T(text) text, sizeof(text) - 1

/* Runs only in the sandbox: the parser on valid and hostile requests, and
 * one response. Touches nothing of the live state. */
static int http_selftest(hs_ctx *ctx, void *state) {
  static const struct {
    const char *text;
    size_t len;
    int want;  /* > 0: the head's whole length */
    int keep;  /* keep-alive expected (for want > 0) */
  } cases[] = {
      {T("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 1, 1},
      {T("GET /a?b=c HTTP/1.1\n\n"), 1, 1},
      {T("GET / HTTP/1.0\r\n\r\n"), 1, 0},
      {T("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), 1, 1},
      {T("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n"), 1, 0},
      {T("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), 1, 1},
      {T("GET / HTTP/1.1\r\nHo"), HTTP_MORE, 0},
      {T("GE"), HTTP_MORE, 0},
      {T(""), HTTP_MORE, 0},
      {T("POST / HTTP/1.1\r\n\r\n"), HTTP_NOT_ALLOWED, 0},
      {T("GET /\r\n\r\n"), HTTP_BAD, 0},
      {T("GET / HTTP/2.0\r\n\r\n"), HTTP_BAD, 0},
      {T("GET  / HTTP/1.1\r\n\r\n"), HTTP_BAD, 0},
      {T(" GET / HTTP/1.1\r\n\r\n"), HTTP_BAD, 0},
      {T("GET x HTTP/1.1\r\n\r\n"), HTTP_BAD, 0},
      {T("hello world\r\n\r\n"), HTTP_BAD, 0},
      {T("\r\n"), HTTP_BAD, 0},
      {T("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), HTTP_BAD, 0},
      {T("GET / HTTP/1.1\r\nA : b\r\n\r\n"), HTTP_BAD, 0},
      {T("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"), HTTP_BAD, 0},
      {T("GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"), HTTP_BAD, 0},
      {T("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), HTTP_BAD, 0},
      {T("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), HTTP_BAD,
       0},
      {T("GET / HTTP/1.1\rX\n\r\n"), HTTP_BAD, 0},
      {T("GET / HTTP/1.1\r\nA: \x01\r\n\r\n"), HTTP_BAD, 0},
      {T("GET /\xc3\xa9 HTTP/1.1\r\n\r\n"), HTTP_BAD, 0},
      {T("\x00\xff\xfe"), HTTP_BAD, 0},
  };
  static char big[HTTP_IN_MAX];
  static http_conn c;
  int keep;
  (void)state;

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int want = cases[i].want > 0 ? (int)cases[i].len : cases[i].want;
    int r = parse_text(cases[i].text, cases[i].len, &keep);
    if (r != want || (r > 0 && keep != cases[i].keep)) {
      api->log(ctx, HS_LOG_ERROR, "selftest: request %zu: parsed as %d, "
               "want %d (keep-alive %d)", i, r, want, keep);
      return HS_ESELFTEST;
    }
  }
  /* A full buffer without the end of the head; a head cut by the buffer. */
  memset(big, 'a', sizeof(big));
  if (parse_text(big, sizeof(big), &keep) != HTTP_BAD) {
    api->log(ctx, HS_LOG_ERROR, "selftest: a full buffer is not a 400");
    return HS_ESELFTEST;
  }
  memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
  if (parse_text(big, sizeof(big), &keep) != HTTP_BAD ||
      parse_text(big, sizeof(big) - 1, &keep) != HTTP_MORE) {
    api->log(ctx, HS_LOG_ERROR, "selftest: a long header is not a 400");
    return HS_ESELFTEST;
  }
  memset(&c, 0, sizeof(c));
  http_respond(&c, 200, 1, UINT64_MAX);
  if (c.out_len == 0 || !strstr(c.out, "hello from http " HTTP_VERSION ",")) {
    api->log(ctx, HS_LOG_ERROR, "selftest: the response does not fit");
    return HS_ESELFTEST;
  }
  return 0;
}

static const hs_plugin http_plugin = {
    .abi_version = HS_ABI_VERSION,
    .size = sizeof(hs_plugin),
    .name = "http",
    .version = HTTP_VERSION,
    .state_version = 1,
    .state_size = sizeof(http_state),
    .load = http_load,
    .unload = http_unload,
    .selftest = http_selftest,
    .on_io = http_on_io,
    .on_config = http_on_config,
};

HS_EXPORT const hs_plugin *hotswap_plugin_entry(const hs_api *host_api) {
  api = host_api;
  return &http_plugin;
}
