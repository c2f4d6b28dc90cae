/*
 * bench_upgrade.c - what a host upgrade costs the clients of a running
 * server: the http example plugin (plugins/http.c, compiled by the host
 * from source) serves two clients while the host's own executable is
 * replaced UPGRADES times (the host re-executes itself with the same pid,
 * carrying the plugin's state and fds), against the same server restarted
 * as a whole process UPGRADES times (SIGTERM, then a new host on the same
 * plugin directory and port), in the same run on the same machine.
 *
 * The host runs from a copy of the built binary (root/bin/hotswap). An
 * upgrade writes the binary with "\nupgrade N\n" appended (a valid ELF
 * whose content differs) to a temporary name and renames it over the copy,
 * as an install does, then waits for the new image's "upgraded:" line
 * ("plugins paused X ms": from the old image unloading its plugins to the
 * new one having loaded them again) and for both clients to be served
 * after it. A restart sends SIGTERM, waits for the host to exit, starts a
 * new one and waits for "http loaded:" (the plugin compiled, validated and
 * loaded from scratch, its state and request counter lost) and for both
 * clients to be served after it. Two more phases for scale: the restarts
 * again with a prebuilt http.so (compiled here with the host's flags: the
 * restart without the compiler), and the upgrades of a host without any
 * plugin (the exec and the handoff alone; no clients).
 *
 * The load: one client keeps a keep-alive connection busy (the next
 * request as soon as the response is complete; it reconnects after a
 * failure), the other opens a fresh connection per request, BENCH_CLIENT_FRESH_US
 * apart. A failure is a refused connection, a reset, a short read, a
 * timeout or a status other than 200; a client waits BENCH_CLIENT_RETRY_MS after one.
 * Each client's "wait" is the time from the start of its first attempt
 * since its last response to the next response: a request's latency when
 * nothing fails, the whole gap (failures and retries included) when
 * something does. Per event the benchmark takes each client's longest
 * wait: the time the server did not serve it, as the client sees it.
 * "Unavailable" adds up, per client, the time from a failure to the next
 * success (as bench_load does).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

#define UPGRADES 30         /* upgrades, and restarts */
#define GAP_MS 200          /* plain load between two events */
#define SERVED_MS 30000     /* both clients served after an event, or stop */
#define WAIT_MS 60000       /* a compile from source on a busy machine */
#define FLAGGED_MAX 20      /* unusual host lines printed */

#ifndef HS_BENCH_SOURCE_DIR
#error "HS_BENCH_SOURCE_DIR names the source tree (bench/CMakeLists.txt)"
#endif
#define HTTP_SRC HS_BENCH_SOURCE_DIR "/plugins/http.c"

/* ---- files -------------------------------------------------------------- */

/* Reads path into a malloc'd buffer with room for 64 more bytes. Returns
 * 0 or -1 (said). */
static int read_all(const char *path, char **data, size_t *size) {
  FILE *f = fopen(path, "rb");
  long n = -1;
  *data = NULL;
  if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 &&
      fseek(f, 0, SEEK_SET) == 0 && (*data = malloc((size_t)n + 64)) &&
      fread(*data, 1, (size_t)n, f) == (size_t)n) {
    fclose(f);
    *size = (size_t)n;
    return 0;
  }
  fprintf(stderr, "bench_upgrade: cannot read %s\n", path);
  if (f)
    fclose(f);
  free(*data);
  *data = NULL;
  return -1;
}

/* Writes size bytes as dir/.NAME.new with mode, then renames it over
 * dir/name (as an install or a build does); *t_ns (if not NULL) is
 * CLOCK_MONOTONIC just before rename(2). Returns 0 or -1 (said). */
static int put_file(const char *dir, const char *name, const void *data,
                    size_t size, mode_t mode, uint64_t *t_ns) {
  char tmp[PATH_MAX + 64], to[PATH_MAX + 64];
  snprintf(tmp, sizeof(tmp), "%s/.%s.new", dir, name);
  snprintf(to, sizeof(to), "%s/%s", dir, name);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, data, size) != (ssize_t)size ||
      fchmod(fd, mode) != 0 || close(fd) != 0)
    goto fail;
  if (t_ns)
    *t_ns = bench_now_ns();
  if (rename(tmp, to) != 0) {
  fail:
    fprintf(stderr, "bench_upgrade: cannot write %s: %s\n", to,
            strerror(errno));
    return -1;
  }
  return 0;
}

/* The built binary (bin: size bytes and room for 64 more) with
 * "\nupgrade TAG\n" appended, as bindir/hotswap; *t_ns as put_file. */
static int put_binary(const char *bindir, char *bin, size_t size, int tag,
                      uint64_t *t_ns) {
  size += (size_t)snprintf(bin + size, 64, "\nupgrade %d\n", tag);
  return put_file(bindir, "hotswap", bin, size, 0755, t_ns);
}

/* ---- the host's log ----------------------------------------------------- */

/* The host of one phase and what its log said. */
typedef struct server {
  bench_host h;
  char bindir[PATH_MAX]; /* root/bin */
  int listening;         /* "http log: listening on" lines read */
  int flagged;           /* lines neither info nor debug, or refusals */
} server;

/* 1 when line (a host log line "HH:MM:SS.mmm LEVEL  ...") is worth
 * showing: not info or debug, or an upgrade refused. */
static int unusual(const char *line) {
  const char *lvl = strchr(line, ' ');
  if (strstr(line, "hotswap upgrade: refused"))
    return 1;
  if (!lvl)
    return 0;
  while (*lvl == ' ')
    lvl++;
  return strncmp(lvl, "info ", 5) != 0 && strncmp(lvl, "debug ", 6) != 0;
}

/* bench_host_line, tallying and showing what the phase must know. */
static int next_line(server *s, int timeout_ms, char *line, size_t size,
                     uint64_t *stamp) {
  int r = bench_host_line(&s->h, timeout_ms, line, size, stamp);
  if (r != 1)
    return r;
  if (strstr(line, "http log: listening on "))
    s->listening++;
  if (unusual(line) && s->flagged++ < FLAGGED_MAX)
    printf("  host: %s\n", line);
  return 1;
}

static void print_last(const server *s) {
  unsigned n = s->h.nlast < 8 ? s->h.nlast : 8;
  fprintf(stderr, "bench_upgrade: the host's last lines:\n");
  for (unsigned i = s->h.nlast - n; i < s->h.nlast; i++)
    fprintf(stderr, "  | %s\n", s->h.last[i % 8]);
}

/* Reads lines until one contains needle, within timeout_ms. Returns 0
 * with line and *stamp filled, or -1 (said). */
static int wait_line(server *s, const char *needle, int timeout_ms, char *line,
                     size_t size, uint64_t *stamp) {
  uint64_t deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
  for (;;) {
    uint64_t now = bench_now_ns();
    int left = now < deadline ? (int)((deadline - now) / 1000000u) : 0;
    int r = next_line(s, left, line, size, stamp);
    if (r == 1 && strstr(line, needle))
      return 0;
    if (r == 1 &&
        (strstr(line, "hotswap upgrade: refused") || strstr(line, " error "))) {
      fprintf(stderr,
              "bench_upgrade: while waiting for \"%s\" the host "
              "said:\n  %s\n",
              needle, line);
      return -1;
    }
    if (r != 1) {
      if (!bench_stopped())
        fprintf(stderr, "bench_upgrade: %s while waiting for \"%s\"\n",
                r == 0 ? "timed out" : "the host's log ended", needle);
      print_last(s);
      return -1;
    }
  }
}

/* Reads the log for ms milliseconds. Returns 0, or -1 when it ended or
 * the run was interrupted. */
static int pump(server *s, int ms) {
  char line[4200];
  uint64_t deadline = bench_now_ns() + (uint64_t)ms * 1000000u;
  for (;;) {
    uint64_t now = bench_now_ns();
    if (now >= deadline)
      return 0;
    if (next_line(s, (int)((deadline - now + 999999u) / 1000000u), line,
                  sizeof(line), NULL) < 0)
      return -1;
  }
}

/* A host tree with the binary copy, http.conf ("port = PORT") and the
 * plugin in place: http.c (the host compiles it), or the prebuilt so (a
 * path) as http.so when so is not NULL; no plugin at all when port < 0.
 * Returns 0 or -1. */
static int server_init(server *s, const char *bin, size_t bin_size, int port,
                       const char *so) {
  char conf[64], *plugin = NULL;
  size_t plugin_size;
  int rc = -1;

  memset(s, 0, sizeof(*s));
  if (bench_host_init(&s->h) != 0)
    return -1;
  snprintf(s->bindir, sizeof(s->bindir), "%.*s/bin", PATH_MAX - 8, s->h.root);
  snprintf(s->h.bin, sizeof(s->h.bin), "%.*s/bin/hotswap", PATH_MAX - 16,
           s->h.root);
  snprintf(conf, sizeof(conf), "port = %d\n", port);
  if (mkdir(s->bindir, 0700) != 0 ||
      put_file(s->bindir, "hotswap", bin, bin_size, 0755, NULL) != 0)
    return -1;
  if (port < 0)
    return 0;
  if (put_file(s->h.plugins, "http.conf", conf, strlen(conf), 0644, NULL) ==
          0 &&
      read_all(so ? so : HTTP_SRC, &plugin, &plugin_size) == 0 &&
      put_file(s->h.plugins, so ? "http.so" : "http.c", plugin, plugin_size,
               0644, NULL) == 0)
    rc = 0;
  free(plugin);
  return rc;
}

/* Compiles plugins/http.c as the host does (host/build.c's flags) into
 * dir/http.so. Returns 0 or -1 (the compiler's messages on stderr). */
static int build_http_so(const char *dir) {
  const char *cc = getenv("CC") && getenv("CC")[0] ? getenv("CC") : "cc";
  char cmd[2 * PATH_MAX + 256];
  snprintf(cmd, sizeof(cmd),
           "%s -shared -fPIC -O2 -g -Wall -fvisibility=hidden -I%s/include "
           "-o %s/http.so %s",
           cc, HS_BENCH_SOURCE_DIR, dir, HTTP_SRC);
  return system(cmd) == 0 ? 0 : -1;
}

/* Starts the host and waits for the plugin: its port in *port (when not
 * NULL), the compile-and-load time of the "http loaded:" line in
 * *loaded_ms, when that line arrived in *stamp. Returns 0 or -1. */
static int server_start(server *s, int *port, double *loaded_ms,
                        uint64_t *stamp) {
  char line[4200];
  double validated, pause;
  if (bench_host_start(&s->h, NULL) != 0 ||
      wait_line(s, "http log: listening on 127.0.0.1:", WAIT_MS, line,
                sizeof(line), NULL) != 0)
    return -1;
  if (port)
    *port = atoi(strstr(line, "127.0.0.1:") + 10);
  if (wait_line(s, "http loaded: version", WAIT_MS, line, sizeof(line),
                stamp) != 0)
    return -1;
  if (bench_parse_reloaded(line, loaded_ms, &validated, &pause) != 0)
    *loaded_ms = -1;
  return 0;
}

/* ---- the load ----------------------------------------------------------- */

/* What one client saw (bench_client.data). */
typedef struct client {
  atomic_long served;
  atomic_long failures;          /* every failed attempt */
  atomic_long resets;            /* of those: reset, EPIPE, closed early */
  atomic_long refused;           /* of those: ECONNREFUSED */
  atomic_long counter_resets;    /* the page's request number went down */
  atomic_uint_fast64_t worst_ns; /* longest wait since the driver took it */
  atomic_uint_fast64_t down_ns;  /* failure -> next success, added up */
  /* the client thread's own */
  uint64_t down_since;      /* the first failure since the last success */
  uint64_t wait_since;      /* the first attempt since the last success */
  long last_count;          /* the request number of the last page */
  bench_samples latency_us; /* of each complete response */
  char first_error[200];
} client;

static void client_fail(bench_client *bc, int e, const char *what) {
  client *c = bc->data;
  atomic_fetch_add(&c->failures, 1);
  if (e == ECONNRESET || e == EPIPE)
    atomic_fetch_add(&c->resets, 1);
  if (e == ECONNREFUSED)
    atomic_fetch_add(&c->refused, 1);
  if (!c->down_since)
    c->down_since = bench_now_ns();
  if (!c->first_error[0])
    snprintf(c->first_error, sizeof(c->first_error), "%s: %s", what,
             e ? strerror(e) : "protocol");
}

static void client_served(bench_client *bc, uint64_t t0, const char *body) {
  client *c = bc->data;
  uint64_t t1 = bench_now_ns(), wait = t1 - c->wait_since;
  const char *at = strstr(body, ", request ");
  long count = at ? atol(at + 10) : -1;
  uint_fast64_t worst = atomic_load(&c->worst_ns);

  bench_samples_add(&c->latency_us, (double)(t1 - t0) / 1e3);
  while (wait > worst &&
         !atomic_compare_exchange_weak(&c->worst_ns, &worst, wait)) {
  }
  if (c->down_since) {
    atomic_fetch_add(&c->down_ns, t1 - c->down_since);
    c->down_since = 0;
  }
  if (count >= 0 && count < c->last_count)
    atomic_fetch_add(&c->counter_resets, 1);
  c->last_count = count;
  c->wait_since = 0;
  atomic_fetch_add(&c->served, 1);
}

/* The wait runs from the first attempt since the last response. */
static void client_begin(bench_client *bc, uint64_t t0) {
  client *c = bc->data;
  if (!c->wait_since)
    c->wait_since = t0;
}

static const bench_client_ops client_ops = {client_begin, client_served,
                                            client_fail};

/* The two clients of one phase: c[0] keep-alive, c[1] fresh. */
typedef struct load {
  bench_clients cl;
  client c[2];
} load;

static int load_start(load *l, int port) {
  void *const data[2] = {&l->c[0], &l->c[1]};
  for (int i = 0; i < 2; i++)
    l->c[i].last_count = -1;
  return bench_clients_start(&l->cl, port, &client_ops, data);
}

static void load_stop(load *l) { bench_clients_stop(&l->cl); }

/* Waits, reading the log, until both clients have had a response after
 * this call. Returns 0 or -1 (said). */
static int load_served(load *l, server *s) {
  long seen[2] = {atomic_load(&l->c[0].served), atomic_load(&l->c[1].served)};
  uint64_t deadline = bench_now_ns() + (uint64_t)SERVED_MS * 1000000u;
  while (atomic_load(&l->c[0].served) == seen[0] ||
         atomic_load(&l->c[1].served) == seen[1]) {
    if (bench_stopped() || bench_now_ns() > deadline) {
      fprintf(stderr,
              "bench_upgrade: the clients were not served within "
              "%d ms\n",
              SERVED_MS);
      return -1;
    }
    if (pump(s, 1) != 0)
      return -1;
  }
  return 0;
}

/* ---- one phase: upgrades or restarts under load -------------------------- */

typedef struct phase {
  const char *name; /* begins its figures: "upgrade", "restart", ... */
  load l;
  int events;                /* upgrades or restarts done */
  double seconds;            /* from the first event to the last */
  bench_samples host_ms;     /* upgrade: plugins paused (the host's log);
                                restart: SIGTERM -> the host exited */
  bench_samples ready_ms;    /* rename -> "upgraded:" line;
                                SIGTERM -> "http loaded:" line */
  bench_samples loaded_ms;   /* restart: "http loaded: ... in X ms" */
  bench_samples worst_ms[3]; /* per event: keep-alive, fresh, either */
  bench_samples failed;      /* per event: failed attempts, both clients */
  double not_served_ms;      /* sum of the events' longest waits (either) */
  long failed_before;        /* failures when the event began */
  int listening;             /* "listening on" lines: sockets opened */
  int flagged;               /* unusual host lines */
  int bad_exits;             /* restart: hosts that did not exit with 0 */
  int bare;                  /* no plugin and no clients: only the pause */
} phase;

static long failures(load *l) {
  return atomic_load(&l->c[0].failures) + atomic_load(&l->c[1].failures);
}

/* Starts an event's window: the clients' longest waits from now. */
static void event_open(phase *p) {
  for (int i = 0; i < 2; i++)
    atomic_store(&p->l.c[i].worst_ns, 0);
  p->failed_before = failures(&p->l);
}

/* Ends it once both clients were served after the server came back (the
 * caller has read the line that says so). Returns 0 or -1. */
static int event_close(phase *p, server *s) {
  if (load_served(&p->l, s) != 0)
    return -1;
  double w[3], failed = (double)(failures(&p->l) - p->failed_before);
  for (int i = 0; i < 2; i++)
    w[i] = (double)atomic_exchange(&p->l.c[i].worst_ns, 0) / 1e6;
  w[2] = w[0] > w[1] ? w[0] : w[1];
  for (int i = 0; i < 3; i++)
    bench_samples_add(&p->worst_ms[i], w[i]);
  bench_samples_add(&p->failed, failed);
  p->not_served_ms += w[2];
  p->events++;
  if (getenv("HOTSWAP_BENCH_VERBOSE") || (failed > 0 && p->name[0] == 'u'))
    printf("  %s %d: host %.2f ms, ready after %.1f ms, longest wait "
           "%.2f / %.2f ms (keep-alive / fresh), %.0f failed\n",
           p->name, p->events, p->host_ms.v[p->host_ms.n - 1],
           p->ready_ms.v[p->ready_ms.n - 1], w[0], w[1], failed);
  return 0;
}

/* The host upgrades itself n times. Returns 0 or -1. */
static int run_upgrade(char *bin, size_t size, int n, phase *p) {
  server s;
  char line[4200], needle[64];
  int port = 0, rc = -1;
  double loaded;
  uint64_t t0 = 0, t_rename, stamp;

  printf("\nupgrade: the host re-executes itself %d times under load\n", n);
  if (server_init(&s, bin, size, 0, NULL) != 0 ||
      server_start(&s, &port, &loaded, NULL) != 0)
    goto out;
  pid_t pid = s.h.pid;
  if (load_start(&p->l, port) != 0 || load_served(&p->l, &s) != 0)
    goto out;
  t0 = bench_now_ns();
  for (int i = 1; i <= n; i++) {
    if (pump(&s, GAP_MS) != 0)
      break;
    event_open(p);
    if (put_binary(s.bindir, bin, size, i, &t_rename) != 0)
      break;
    snprintf(needle, sizeof(needle), ", upgrade %d: plugins paused ", i);
    if (wait_line(&s, needle, WAIT_MS, line, sizeof(line), &stamp) != 0)
      break;
    bench_samples_add(&p->host_ms,
                      strtod(strstr(line, needle) + strlen(needle), NULL));
    bench_samples_add(&p->ready_ms, (double)(stamp - t_rename) / 1e6);
    if (event_close(p, &s) != 0)
      break;
  }
  p->seconds = (double)(bench_now_ns() - t0) / 1e9;
  pump(&s, GAP_MS);
  load_stop(&p->l);
  if (s.h.pid != pid || kill(pid, 0) != 0)
    printf("  the host's pid changed or it is gone (pid %d)\n", (int)pid);
  p->listening = s.listening;
  p->flagged = s.flagged;
  rc = bench_host_stop(&s.h) == 0 && p->events == n ? 0 : -1;
out:
  load_stop(&p->l);
  bench_host_close(&s.h);
  return rc;
}

/* For scale: the same upgrades of a host without plugins (no state, no
 * fds: the exec and the handoff alone). Returns 0 or -1. */
static int run_upgrade_empty(char *bin, size_t size, int n, phase *p) {
  server s;
  char line[4200], needle[64];
  int rc = -1;
  uint64_t t_rename, stamp;

  printf("\n%s: a host without plugins re-executes itself %d times\n", p->name,
         n);
  if (server_init(&s, bin, size, -1, NULL) != 0 ||
      bench_host_start(&s.h, NULL) != 0)
    goto out;
  for (int i = 1; i <= n; i++) {
    if (pump(&s, GAP_MS) != 0 ||
        put_binary(s.bindir, bin, size, i, &t_rename) != 0)
      break;
    snprintf(needle, sizeof(needle), ", upgrade %d: plugins paused ", i);
    if (wait_line(&s, needle, WAIT_MS, line, sizeof(line), &stamp) != 0)
      break;
    bench_samples_add(&p->host_ms,
                      strtod(strstr(line, needle) + strlen(needle), NULL));
    bench_samples_add(&p->ready_ms, (double)(stamp - t_rename) / 1e6);
    p->events++;
  }
  p->flagged = s.flagged;
  rc = bench_host_stop(&s.h) == 0 && p->events == n ? 0 : -1;
out:
  bench_host_close(&s.h);
  return rc;
}

/* The same server restarted as a whole process n times, on a fixed port;
 * the plugin from source, or the prebuilt so when not NULL. Returns 0 or
 * -1. */
static int run_restart(char *bin, size_t size, int n, const char *so,
                       phase *p) {
  server s;
  int port = bench_free_port(), rc = -1;
  double loaded;
  uint64_t t0 = 0, t_term, t_exit, stamp;

  printf("\n%s: the host stopped (SIGTERM) and started again %d times "
         "under load, %s\n",
         p->name, n, so ? "http.so prebuilt" : "http.c compiled at each start");
  if (!port || server_init(&s, bin, size, port, so) != 0 ||
      server_start(&s, NULL, &loaded, NULL) != 0)
    goto out;
  if (load_start(&p->l, port) != 0 || load_served(&p->l, &s) != 0)
    goto out;
  t0 = bench_now_ns();
  for (int i = 1; i <= n; i++) {
    if (pump(&s, GAP_MS) != 0)
      break;
    event_open(p);
    t_term = bench_now_ns();
    int st = bench_host_stop(&s.h);
    t_exit = bench_now_ns();
    if (st != 0 && p->bad_exits++ == 0)
      printf("  restart %d: the host exited with %d\n", i, st);
    if (bench_stopped() || server_start(&s, NULL, &loaded, &stamp) != 0)
      break;
    bench_samples_add(&p->host_ms, (double)(t_exit - t_term) / 1e6);
    bench_samples_add(&p->ready_ms, (double)(stamp - t_term) / 1e6);
    bench_samples_add(&p->loaded_ms, loaded);
    if (event_close(p, &s) != 0)
      break;
  }
  p->seconds = (double)(bench_now_ns() - t0) / 1e9;
  pump(&s, GAP_MS);
  load_stop(&p->l);
  p->listening = s.listening;
  p->flagged = s.flagged;
  rc = bench_host_stop(&s.h) == 0 && p->events == n ? 0 : -1;
out:
  load_stop(&p->l);
  bench_host_close(&s.h);
  return rc;
}

/* ---- figures ------------------------------------------------------------ */

/* A phase's counters, both clients added up. */
typedef struct counts {
  long served, failures, refused, resets, ka_connects, counter_resets;
  double down_ms; /* failure -> next success */
} counts;

static counts count(phase *p) {
  counts t = {0};
  for (int i = 0; i < 2; i++) {
    client *c = &p->l.c[i];
    t.served += atomic_load(&c->served);
    t.failures += atomic_load(&c->failures);
    t.refused += atomic_load(&c->refused);
    t.resets += atomic_load(&c->resets);
    t.counter_resets += atomic_load(&c->counter_resets);
    t.down_ms += (double)atomic_load(&c->down_ns) / 1e6;
  }
  t.ka_connects = atomic_load(&p->l.cl.c[0].connects);
  return t;
}

static void latency(phase *p, bench_samples *all) {
  for (int i = 0; i < 2; i++)
    for (size_t k = 0; k < p->l.c[i].latency_us.n; k++)
      bench_samples_add(all, p->l.c[i].latency_us.v[k]);
}

static void report(phase *p) {
  static const char *const who[3] = {"keep-alive client", "fresh client",
                                     "either client"};
  int up = p->name[0] == 'u';
  bench_samples lat = {0};
  counts t = count(p);
  char m[128];

  for (int i = 0; i < 2; i++)
    if (p->l.c[i].first_error[0])
      printf("  (%s, first failure: %s)\n", who[i], p->l.c[i].first_error);
  bench_table_header();
  snprintf(m, sizeof(m), "%s: %s", p->name,
           up ? "plugins paused (the host's log)" : "SIGTERM -> host exited");
  bench_report(m, "ms", &p->host_ms);
  snprintf(m, sizeof(m), "%s: %s", p->name,
           up ? "rename -> \"upgraded:\" line" : "SIGTERM -> \"http loaded:\"");
  bench_report(m, "ms", &p->ready_ms);
  if (p->bare)
    return;
  if (!up) {
    snprintf(m, sizeof(m), "%s: plugin loaded in (host's log)", p->name);
    bench_report(m, "ms", &p->loaded_ms);
  }
  for (int i = 0; i < 3; i++) {
    snprintf(m, sizeof(m), "%s: longest wait, %s", p->name, who[i]);
    bench_report(m, "ms", &p->worst_ms[i]);
  }
  snprintf(m, sizeof(m), "%s: failed requests per event", p->name);
  bench_report(m, "count", &p->failed);
  latency(p, &lat);
  snprintf(m, sizeof(m), "%s: request latency", p->name);
  bench_report(m, "us", &lat);
  bench_samples_free(&lat);
  snprintf(m, sizeof(m), "%s: events done", p->name);
  bench_report_one(m, "count", p->events);
  snprintf(m, sizeof(m), "%s: requests served", p->name);
  bench_report_one(m, "count", (double)t.served);
  snprintf(m, sizeof(m), "%s: requests failed", p->name);
  bench_report_one(m, "count", (double)t.failures);
  snprintf(m, sizeof(m), "%s: of which refused", p->name);
  bench_report_one(m, "count", (double)t.refused);
  snprintf(m, sizeof(m), "%s: of which reset or closed", p->name);
  bench_report_one(m, "count", (double)t.resets);
  snprintf(m, sizeof(m), "%s: keep-alive connections opened", p->name);
  bench_report_one(m, "count", (double)t.ka_connects);
  snprintf(m, sizeof(m), "%s: request counter went back", p->name);
  bench_report_one(m, "count", (double)t.counter_resets);
  snprintf(m, sizeof(m), "%s: listening sockets opened", p->name);
  bench_report_one(m, "count", p->listening);
  snprintf(m, sizeof(m), "%s: unavailable (failure -> success)", p->name);
  bench_report_one(m, "ms", t.down_ms);
  snprintf(m, sizeof(m), "%s: not served (sum of longest waits)", p->name);
  bench_report_one(m, "ms", p->not_served_ms);
  if (p->flagged)
    printf("  (%d warning or error lines from the host)\n", p->flagged);
}

/* The rows of the side-by-side table. */
enum {
  ROW_EVENTS,
  ROW_HOST,
  ROW_READY,
  ROW_WORST_KA,
  ROW_WORST_FRESH,
  ROW_WORST_EITHER,
  ROW_WORST_MAX,
  ROW_SERVED,
  ROW_FAILED,
  ROW_REFUSED,
  ROW_RESETS,
  ROW_KA_CONNECTS,
  ROW_COUNTER,
  ROW_DOWN,
  ROW_NOT_SERVED,
  ROW_SECONDS,
  ROWS
};

static const struct {
  const char *label;
  const char *fmt;
} row_def[ROWS] = {
    {"events", " %16.0f"},
    {"host: paused / SIGTERM -> exited, ms", " %16.2f"},
    {"trigger -> serving again (log), ms", " %16.1f"},
    {"longest wait per event, keep-alive, ms", " %16.2f"},
    {"longest wait per event, fresh, ms", " %16.2f"},
    {"longest wait per event, either, ms", " %16.2f"},
    {"  the worst event, either, ms", " %16.1f"},
    {"requests served", " %16.0f"},
    {"requests failed", " %16.0f"},
    {"  of which refused", " %16.0f"},
    {"  of which reset or closed", " %16.0f"},
    {"keep-alive connections opened", " %16.0f"},
    {"request counter went back", " %16.0f"},
    {"unavailable, failure -> success, ms", " %16.1f"},
    {"not served, sum of longest waits, ms", " %16.1f"},
    {"phase duration, s", " %16.1f"},
};

static void side_by_side(phase *const *p, int n) {
  double v[ROWS][3];

  printf("\nside by side (medians over the events; counts and sums over "
         "the phase):\n  %-40s",
         "");
  for (int i = 0; i < n && i < 3; i++) {
    counts t = count(p[i]);
    printf(" %16s", p[i]->name);
    v[ROW_EVENTS][i] = p[i]->events;
    v[ROW_HOST][i] = bench_quantile(&p[i]->host_ms, 0.5);
    v[ROW_READY][i] = bench_quantile(&p[i]->ready_ms, 0.5);
    v[ROW_WORST_KA][i] = bench_quantile(&p[i]->worst_ms[0], 0.5);
    v[ROW_WORST_FRESH][i] = bench_quantile(&p[i]->worst_ms[1], 0.5);
    v[ROW_WORST_EITHER][i] = bench_quantile(&p[i]->worst_ms[2], 0.5);
    v[ROW_WORST_MAX][i] = bench_quantile(&p[i]->worst_ms[2], 1.0);
    v[ROW_SERVED][i] = (double)t.served;
    v[ROW_FAILED][i] = (double)t.failures;
    v[ROW_REFUSED][i] = (double)t.refused;
    v[ROW_RESETS][i] = (double)t.resets;
    v[ROW_KA_CONNECTS][i] = (double)t.ka_connects;
    v[ROW_COUNTER][i] = (double)t.counter_resets;
    v[ROW_DOWN][i] = t.down_ms;
    v[ROW_NOT_SERVED][i] = p[i]->not_served_ms;
    v[ROW_SECONDS][i] = p[i]->seconds;
  }
  printf("\n");
  for (int r = 0; r < ROWS; r++) {
    printf("  %-40s", row_def[r].label);
    for (int i = 0; i < n && i < 3; i++)
      printf(row_def[r].fmt, v[r][i]);
    printf("\n");
  }
}

static void phase_free(phase *p) {
  bench_samples_free(&p->host_ms);
  bench_samples_free(&p->ready_ms);
  bench_samples_free(&p->loaded_ms);
  bench_samples_free(&p->failed);
  for (int i = 0; i < 3; i++)
    bench_samples_free(&p->worst_ms[i]);
  for (int i = 0; i < 2; i++)
    bench_samples_free(&p->l.c[i].latency_us);
}

int main(void) {
  static phase up = {.name = "upgrade"}, re = {.name = "restart"},
               so = {.name = "restart .so"},
               empty = {.name = "upgrade, no plugin", .bare = 1};
  phase *const all[] = {&up, &re, &so, &empty};
  int n = bench_count(UPGRADES, 3), rc = 0, phases = 1;
  bench_host scratch;
  char *bin, http_so[PATH_MAX + 16];
  size_t size;

  bench_init("bench_upgrade", 600);
  if (read_all(HS_BENCH_BIN, &bin, &size) != 0)
    return 1;
  if (bench_host_init(&scratch) != 0 || build_http_so(scratch.src) != 0) {
    fprintf(stderr, "bench_upgrade: cannot build %s\n", HTTP_SRC);
    bench_host_close(&scratch);
    free(bin);
    return 1;
  }
  snprintf(http_so, sizeof(http_so), "%s/http.so", scratch.src);
  if (run_upgrade(bin, size, n, &up) != 0)
    rc = 1;
  report(&up);
  if (!bench_stopped()) {
    if (run_restart(bin, size, n, NULL, &re) != 0)
      rc = 1;
    report(&re);
    phases++;
  }
  if (!bench_stopped()) {
    if (run_restart(bin, size, n, http_so, &so) != 0)
      rc = 1;
    report(&so);
    phases++;
  }
  if (!bench_stopped()) {
    if (run_upgrade_empty(bin, size, n, &empty) != 0)
      rc = 1;
    report(&empty);
  }
  side_by_side(all, phases);
  if (empty.events)
    printf("  %-40s %16.2f  (a host without plugins, for scale)\n",
           "host: paused, ms", bench_quantile(&empty.host_ms, 0.5));
  for (int i = 0; i < 4; i++)
    phase_free(all[i]);
  bench_host_close(&scratch);
  free(bin);
  return rc;
}
