/*
 * test_host_load.c - zero downtime under load: the http example plugin
 * (plugins/http.c) serves two clients of this test while it is swapped 100
 * times. One client keeps a single keep-alive connection busy, the other
 * opens a fresh connection for every request. Every request must succeed
 * (no refused or reset connection, no short read, status 200), the
 * keep-alive connection must live through every swap, and once the host
 * has logged "http reloaded: version vN" no response may come from an
 * older version.
 *
 * The 101 versions (v0..v100) are built by this test with cc from a copy
 * of http.c whose version line is rewritten, in parallel and at -O0 (half
 * the time of -O2; the code paths are the same), before the host starts;
 * each swap renames the next one over http.so. A source plugin would take
 * the same swap path after a compile of ~0.4 s each. Loopback only; every
 * wait is bounded.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

extern char **environ;

#define SWAPS 100
#define IO_TIMEOUT_S 10      /* a response slower than this is a failure */
#define CATCH_UP_MS 10000    /* both clients see a new version within this */
#define FRESH_PAUSE_US 2000  /* between two fresh connections */
#define HTTP_SRC HS_TEST_SOURCE_DIR "/plugins/http.c"

/* ---- building the versions --------------------------------------------- */

/* Reads a whole file into a malloc'd string. NULL when missing. */
static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  long len;
  if (!f)
    return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 &&
      fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)len + 1)) != NULL) {
    size_t got = fread(buf, 1, (size_t)len, f);
    buf[got] = '\0';
  }
  fclose(f);
  return buf;
}

/*
 * Writes src with the string literal of its "#define HTTP_VERSION" line
 * replaced by "vN" to path. Returns 0, or -1 when the line is missing.
 */
static int write_version(const char *src, int n, const char *path) {
  const char *line = strstr(src, "#define HTTP_VERSION ");
  const char *q1 = line ? strchr(line, '"') : NULL;
  const char *eol = line ? strchr(line, '\n') : NULL;
  const char *q2 = q1 ? strchr(q1 + 1, '"') : NULL;
  FILE *f;
  if (!q2 || (eol && q1 > eol)) {
    fprintf(stderr, "test: no '#define HTTP_VERSION \"...\"' in %s\n",
            HTTP_SRC);
    return -1;
  }
  if (!(f = fopen(path, "w")))
    return -1;
  fprintf(f, "%.*s\"v%d\"%s", (int)(q1 - src), src, n, q2 + 1);
  return fclose(f) == 0 ? 0 : -1;
}

/* Starts cc on src into so (posix_spawn: cheap also under ASan). Returns
 * its pid or -1. */
static pid_t start_cc(const char *src, const char *so) {
  const char *cc = getenv("CC") && getenv("CC")[0] ? getenv("CC") : "cc";
  const char *argv[] = {cc, "-shared", "-fPIC", "-O0", "-fvisibility=hidden",
                        "-I" HS_TEST_SOURCE_DIR "/include",
                        "-I" HS_TEST_SOURCE_DIR "/plugins", "-o", so, src,
                        NULL};
  pid_t pid;
  if (posix_spawnp(&pid, cc, NULL, NULL, (char *const *)argv, environ) != 0)
    return -1;
  return pid;
}

/* Builds root/build/http_vN.so for N in 0..SWAPS, a few compilers at a
 * time. Returns 0 or -1. */
static int build_versions(const harness *h, const char *src) {
  char dir[PATH_MAX + 8], c[PATH_MAX + 48], so[PATH_MAX + 48];
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int jobs = cpus > 1 ? (int)(cpus < 8 ? cpus : 8) : 1, running = 0, rc = 0;

  snprintf(dir, sizeof(dir), "%s/build", h->root);
  if (mkdir(dir, 0700) != 0)
    return -1;
  for (int n = 0; n <= SWAPS || running > 0;) {
    if (n <= SWAPS && running < jobs && rc == 0) {
      snprintf(c, sizeof(c), "%s/http_v%d.c", dir, n);
      snprintf(so, sizeof(so), "%s/http_v%d.so", dir, n);
      if (write_version(src, n, c) != 0 || start_cc(c, so) < 0)
        rc = -1;
      else
        running++;
      n++;
      continue;
    }
    if (running == 0)
      break;
    int st;
    if (wait(&st) < 0)
      return -1;
    running--;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
      rc = -1;
  }
  return rc;
}

/* Renames root/build/http_vN.so over plugins/http.so. Returns 0 or -1. */
static int swap_in(const harness *h, int n) {
  char from[PATH_MAX + 32], to[PATH_MAX + 32];
  snprintf(from, sizeof(from), "%s/build/http_v%d.so", h->root, n);
  snprintf(to, sizeof(to), "%s/http.so", h->plugins);
  return rename(from, to);
}

/* ---- the client -------------------------------------------------------- */

/* One client thread: keep-alive (one connection for every request) or
 * fresh (one connection per request). The counters are read by the test
 * while the thread runs (atomics) and after it ended. */
typedef struct client {
  int port;
  int keepalive;
  atomic_int *stop;        /* set by the test: end the loop */
  atomic_int *min_version; /* the host reported it: older is stale */
  atomic_long responses;   /* complete 200 responses */
  atomic_int last_version; /* version of the last response, -1: none */
  long failures;           /* refused, reset, short, timed out, not 200 */
  long resets;             /* of those: ECONNRESET or EPIPE */
  long stale;              /* a response older than min_version */
  long backwards;          /* version or request number went backwards */
  long connects;           /* connections opened */
  long last_request;       /* "request <n>" of the last response */
  char first_error[256];   /* what the first failure was */
} client;

typedef enum { IO_OK = 0, IO_FAIL, IO_RESET } io_result;

static io_result client_fail(client *c, io_result r, const char *fmt, ...) {
  va_list ap;
  c->failures++;
  if (r == IO_RESET)
    c->resets++;
  if (c->first_error[0] == '\0') {
    int n = snprintf(c->first_error, sizeof(c->first_error),
                     "%s, after %ld responses: ",
                     c->keepalive ? "keep-alive" : "fresh",
                     atomic_load(&c->responses));
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(c->first_error))
      vsnprintf(c->first_error + n, sizeof(c->first_error) - (size_t)n, fmt,
                ap);
    va_end(ap);
  }
  return r;
}

static io_result fail_errno(client *c, const char *what, int e) {
  return client_fail(c, e == ECONNRESET || e == EPIPE ? IO_RESET : IO_FAIL,
                     "%s: %s",
              what, e ? strerror(e) : "connection closed");
}

static int client_connect(client *c) {
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)c->port)};
  struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
  int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0) {
    fail_errno(c, "socket", errno);
    return -1;
  }
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    fail_errno(c, "connect", errno);
    close(fd);
    return -1;
  }
  c->connects++;
  return fd;
}

/* Sends one GET and reads the whole response (headers, then
 * Content-Length bytes of body); checks status, version and order. */
static io_result client_request(client *c, int fd) {
  static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  char buf[16384];
  size_t len = 0, need = 0;
  char *body = NULL;
  int min = atomic_load(c->min_version);

  if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1)
    return fail_errno(c, "send", errno);
  while (!body || len < need) {
    if (len + 1 >= sizeof(buf))
      return client_fail(c, IO_FAIL, "response larger than %zu bytes",
                         sizeof(buf));
    ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return client_fail(c, IO_FAIL, "no response within %d s", IO_TIMEOUT_S);
    if (n <= 0)
      return n == 0 && len > 0
                 ? client_fail(c, IO_FAIL, "short read (%zu bytes)", len)
                 : fail_errno(c, "recv", n == 0 ? 0 : errno);
    len += (size_t)n;
    buf[len] = '\0';
    if (!body) {
      char *end = strstr(buf, "\r\n\r\n"), *cl;
      if (!end)
        continue;
      *end = '\0';
      if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0)
        return client_fail(c, IO_FAIL, "status line '%.40s'", buf);
      for (cl = buf; (cl = strchr(cl, '\n')) != NULL; cl++)
        if (strncasecmp(cl + 1, "Content-Length:", 15) == 0)
          break;
      if (!cl)
        return client_fail(c, IO_FAIL, "no Content-Length");
      body = end + 4;
      need = (size_t)(body - buf) + strtoul(cl + 16, NULL, 10);
    }
  }
  if (len != need)
    return client_fail(c, IO_FAIL, "%zu bytes after the body", len - need);
  const char *v = strstr(body, "hello from http v");
  const char *r = v ? strstr(v, ", request ") : NULL;
  if (!r)
    return client_fail(c, IO_FAIL, "body '%.60s'", body);
  int version = atoi(v + 17);
  long request = atol(r + 10);
  if (version < min)
    c->stale++;
  if (version < atomic_load(&c->last_version) ||
      (c->keepalive && request <= c->last_request))
    c->backwards++;
  c->last_request = request;
  atomic_store(&c->last_version, version);
  atomic_fetch_add(&c->responses, 1);
  return IO_OK;
}

static void *client_main(void *arg) {
  client *c = arg;
  int fd = -1;
  while (!atomic_load(c->stop)) {
    if (fd < 0 && (fd = client_connect(c)) < 0) {
      usleep(10000);
      continue;
    }
    if (client_request(c, fd) != IO_OK || !c->keepalive) {
      close(fd);
      fd = -1;
      if (!c->keepalive)
        usleep(FRESH_PAUSE_US);
    }
  }
  if (fd >= 0)
    close(fd);
  return NULL;
}

/* Waits until both clients have a response of version n or newer. */
static int catch_up(client *cl, int n) {
  for (int ms = 0; ms < CATCH_UP_MS; ms++) {
    if (atomic_load(&cl[0].last_version) >= n &&
        atomic_load(&cl[1].last_version) >= n)
      return 0;
    usleep(1000);
  }
  fprintf(stderr, "test: no response of v%d within %d ms (keep-alive v%d, "
          "fresh v%d)\n", n, CATCH_UP_MS, atomic_load(&cl[0].last_version),
          atomic_load(&cl[1].last_version));
  return -1;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- tests ------------------------------------------------------------- */

static void test_host_load_100_swaps_zero_downtime(void **state) {
  harness *h = *state;
  char *src = read_text(HTTP_SRC), line[512], want[64];
  atomic_int stop = 0, min_version = 0;
  client cl[2];
  pthread_t th[2];
  int started = 0, swaps = 0, port = 0;
  double t0, t_built, t_end;

  if (!src) {
    fprintf(stderr, "test: %s is missing\n", HTTP_SRC);
    skip();
  }
  t0 = now_s();
  int built = build_versions(h, src);
  free(src);
  assert_int_equal(built, 0);
  t_built = now_s();

  assert_int_equal(harness_install_text(h, "port = 0\n", "http.conf",
                                        HARNESS_WRITE_NEW),
                   0);
  assert_int_equal(swap_in(h, 0), 0);
  assert_int_equal(harness_start(h, NULL), 0);
  assert_true(harness_wait(h, "listening on 127.0.0.1:", line,
                           sizeof(line)) >= 0);
  port = atoi(strstr(line, "listening on 127.0.0.1:") + 23);
  assert_true(port > 0 && port < 65536);
  harness_expect_line(h, "http loaded: version v0,");

  for (int i = 0; i < 2; i++) {
    memset(&cl[i], 0, sizeof(cl[i]));
    cl[i].port = port;
    cl[i].keepalive = i == 0;
    cl[i].stop = &stop;
    cl[i].min_version = &min_version;
    atomic_init(&cl[i].responses, 0);
    atomic_init(&cl[i].last_version, -1);
    if (pthread_create(&th[i], NULL, client_main, &cl[i]) != 0)
      break;
    started++;
  }
  if (started == 2 && catch_up(cl, 0) == 0) {
    for (int n = 1; n <= SWAPS; n++) {
      if (swap_in(h, n) != 0)
        break;
      snprintf(want, sizeof(want), "http reloaded: version v%d,", n);
      if (harness_wait(h, want, NULL, 0) < 0)
        break;
      atomic_store(&min_version, n);
      if (catch_up(cl, n) != 0)
        break;
      swaps = n;
    }
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < started; i++)
    pthread_join(th[i], NULL);
  t_end = now_s();

  fprintf(stderr,
          "load: %d swaps in %.1f s (builds %.1f s); keep-alive: %ld "
          "responses on %ld connection(s); fresh: %ld responses; failures "
          "%ld + %ld, resets %ld + %ld, stale %ld + %ld\n",
          swaps, t_end - t_built, t_built - t0,
          atomic_load(&cl[0].responses), cl[0].connects,
          atomic_load(&cl[1].responses), cl[0].failures, cl[1].failures,
          cl[0].resets, cl[1].resets, cl[0].stale, cl[1].stale);
  for (int i = 0; i < started; i++)
    if (cl[i].first_error[0])
      fprintf(stderr, "load: first failure: %s\n", cl[i].first_error);

  assert_int_equal(started, 2);
  assert_int_equal(swaps, SWAPS);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(cl[i].failures, 0);
    assert_int_equal(cl[i].resets, 0);
    assert_int_equal(cl[i].stale, 0);
    assert_int_equal(cl[i].backwards, 0);
    assert_int_equal(atomic_load(&cl[i].last_version), SWAPS);
    assert_true(atomic_load(&cl[i].responses) > SWAPS);
  }
  /* The keep-alive connection is the one opened first: it served every
   * version. */
  assert_int_equal(cl[0].connects, 1);
  assert_int_equal(cl[1].connects, atomic_load(&cl[1].responses));
  assert_int_equal(harness_stop(h), 0);
  harness_expect_line(h, "hotswap stopped: clean exit");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_host_load_100_swaps_zero_downtime,
                                      harness_setup, harness_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
