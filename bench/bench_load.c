/*
 * bench_load.c - zero downtime under load: requests served, failed and
 * reset, and their latency (p50, p99, max), while the http example plugin
 * (plugins/http.c) is swapped 100 times under two clients, against the
 * same server restarted as a whole process 100 times by `entr -r`, in the
 * same run on the same machine.
 *
 * The builds: 101 versions (v0..v100) of a copy of http.c whose version
 * line is rewritten, each compiled once to an object and linked twice: as
 * a plugin (http.so, for the host) and with bench/http_main.c, the
 * smallest host that runs the plugin as an ordinary process, into an
 * executable (for entr). Both servers run the same code.
 *
 * The load: one client thread keeps a keep-alive connection busy (a new
 * request as soon as the previous response is complete; it reconnects
 * after a failure), another opens a fresh connection for every request
 * (BENCH_CLIENT_FRESH_US apart). A failure is a refused connection, a reset, a
 * short read, a timeout or a status other than 200; after one a client
 * waits BENCH_CLIENT_RETRY_MS before it tries again. "Unavailable" adds up, per client,
 * the time from a failure to the next success.
 *
 * Each swap renames the next version into place (http.so in the host's
 * directory; the executable entr watches) and waits until both clients
 * have had a response from it, then GAP_MS of plain load.
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
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define GAP_MS 100          /* plain load between two swaps */
#define CATCH_UP_MS 10000   /* a version not served by then ends the run */
#define WAIT_MS 20000

#ifndef HS_BENCH_SOURCE_DIR
#error "HS_BENCH_SOURCE_DIR names the source tree (bench/CMakeLists.txt)"
#endif
#define HTTP_SRC HS_BENCH_SOURCE_DIR "/plugins/http.c"

/* ---- builds ------------------------------------------------------------- */

/* Writes http.c with its "#define HTTP_VERSION" string replaced by "vN"
 * as dir/http_vN.c. Returns 0 or -1. */
static int write_version(const char *src, const char *dir, int n) {
  const char *line = strstr(src, "#define HTTP_VERSION ");
  const char *q1 = line ? strchr(line, '"') : NULL;
  const char *q2 = q1 ? strchr(q1 + 1, '"') : NULL;
  char path[PATH_MAX + 32];
  FILE *f;
  if (!q2) {
    fprintf(stderr, "bench_load: no '#define HTTP_VERSION \"...\"' in %s\n",
            HTTP_SRC);
    return -1;
  }
  snprintf(path, sizeof(path), "%s/http_v%d.c", dir, n);
  if (!(f = fopen(path, "w")))
    return -1;
  fprintf(f, "%.*s\"v%d\"%s", (int)(q1 - src), src, n, q2 + 1);
  return fclose(f) == 0 ? 0 : -1;
}

/* Runs cmd with /bin/sh in the background. Returns its pid or -1. */
static pid_t start_sh(const char *cmd) {
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  return pid;
}

/* Builds dir/http_vN.so and dir/server_vN for N in 0..last, nproc at a
 * time. Returns 0 or -1 (the compiler's messages are on stderr). */
static int build_all(const char *dir, int last) {
  static const char flags[] = "-O2 -fPIC -fvisibility=hidden"
                              " -I" HS_BENCH_SOURCE_DIR
                              "/include -I" HS_BENCH_SOURCE_DIR "/plugins";
  const char *cc = getenv("CC") && getenv("CC")[0] ? getenv("CC") : "cc";
  char *src = NULL, cmd[4 * PATH_MAX];
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int jobs = cpus > 1 ? (int)cpus : 1, running = 0, rc = 0, st;
  FILE *f = fopen(HTTP_SRC, "rb");
  long len;

  if (!f) {
    fprintf(stderr, "bench_load: %s is missing\n", HTTP_SRC);
    return -1;
  }
  if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) > 0 &&
      fseek(f, 0, SEEK_SET) == 0 && (src = calloc(1, (size_t)len + 1)))
    if (fread(src, 1, (size_t)len, f) != (size_t)len)
      rc = -1;
  fclose(f);
  if (!src || rc)
    return -1;
  snprintf(cmd, sizeof(cmd),
           "%s %s -std=c11 -Wall -c -o %s/http_main.o %s/bench/http_main.c",
           cc, flags, dir, HS_BENCH_SOURCE_DIR);
  if (start_sh(cmd) < 0 || wait(&st) < 0 || !WIFEXITED(st) ||
      WEXITSTATUS(st) != 0) {
    free(src);
    return -1;
  }
  for (int n = 0; n <= last || running > 0;) {
    if (n <= last && running < jobs && rc == 0 && !bench_stopped()) {
      snprintf(cmd, sizeof(cmd),
               "cd %s && %s %s -c -o http_v%d.o http_v%d.c && "
               "%s -shared -o http_v%d.so http_v%d.o && "
               "%s -o server_v%d http_main.o http_v%d.o",
               dir, cc, flags, n, n, cc, n, n, cc, n, n);
      if (write_version(src, dir, n) != 0 || start_sh(cmd) < 0)
        rc = -1;
      else
        running++;
      n++;
      continue;
    }
    if (running == 0)
      break;
    if (wait(&st) < 0) {
      if (errno == EINTR)
        continue;
      rc = -1;
      break;
    }
    running--;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
      rc = -1;
  }
  free(src);
  return rc;
}

/* ---- the load ----------------------------------------------------------- */

/* What one client saw (bench_client.data; written on its thread). */
typedef struct client {
  atomic_int last_version; /* of the last response, -1: none yet */
  long responses;
  long failures;     /* every failed attempt */
  long resets;       /* of those: ECONNRESET, EPIPE, closed before a reply */
  long refused;      /* of those: ECONNREFUSED */
  uint64_t down_ns;  /* failure -> next success, added up */
  uint64_t down_since;
  bench_samples latency_us; /* of each complete response */
  char first_error[200];
} client;

/* Counts one failure (e = errno, 0 for a protocol error). */
static void client_failed(bench_client *bc, int e, const char *what) {
  client *c = bc->data;
  c->failures++;
  if (e == ECONNRESET || e == EPIPE)
    c->resets++;
  if (e == ECONNREFUSED)
    c->refused++;
  if (!c->down_since)
    c->down_since = bench_now_ns();
  if (!c->first_error[0])
    snprintf(c->first_error, sizeof(c->first_error), "%s: %s", what,
             e ? strerror(e) : "protocol");
}

/* A 200 page: its version, and the request's latency. */
static void client_served(bench_client *bc, uint64_t t0, const char *body) {
  client *c = bc->data;
  const char *v = strstr(body, "hello from http v");
  if (!v) {
    client_failed(bc, 0, "body");
    return;
  }
  uint64_t t1 = bench_now_ns();
  bench_samples_add(&c->latency_us, (double)(t1 - t0) / 1e3);
  if (c->down_since) {
    c->down_ns += t1 - c->down_since;
    c->down_since = 0;
  }
  c->responses++;
  atomic_store(&c->last_version, atoi(v + 17));
}

static const bench_client_ops client_ops = {NULL, client_served,
                                            client_failed};

/* The two clients of one phase: c[0] keep-alive, c[1] fresh. */
typedef struct load {
  bench_clients cl;
  client c[2];
} load;

static int load_start(load *l, int port) {
  void *const data[2] = {&l->c[0], &l->c[1]};
  memset(l, 0, sizeof(*l));
  for (int i = 0; i < 2; i++)
    atomic_init(&l->c[i].last_version, -1);
  return bench_clients_start(&l->cl, port, &client_ops, data);
}

static void load_stop(load *l) { bench_clients_stop(&l->cl); }

static void load_free(load *l) {
  for (int i = 0; i < 2; i++)
    bench_samples_free(&l->c[i].latency_us);
}

/* Waits (reading the host's log when h is not NULL) until both clients
 * had a response of version n or newer. Returns 0 or -1. */
static int load_catch_up(load *l, bench_host *h, int n) {
  uint64_t deadline = bench_now_ns() + (uint64_t)CATCH_UP_MS * 1000000u;
  while (atomic_load(&l->c[0].last_version) < n ||
         atomic_load(&l->c[1].last_version) < n) {
    if (bench_stopped() || bench_now_ns() > deadline) {
      fprintf(stderr, "bench_load: v%d not served within %d ms\n", n,
              CATCH_UP_MS);
      return -1;
    }
    if (h ? bench_host_idle(h, 1) != 0 : usleep(1000) != 0)
      return -1;
  }
  return 0;
}

/* What one phase measured, for the side-by-side table. */
typedef struct outcome {
  int swaps;
  double seconds;
  long responses, failures, resets, refused, ka_connects;
  double down_ms;
  bench_samples lat; /* both clients */
} outcome;

static void outcome_take(outcome *o, load *l, int swaps, double seconds) {
  memset(o, 0, sizeof(*o));
  o->swaps = swaps;
  o->seconds = seconds;
  for (int i = 0; i < 2; i++) {
    client *c = &l->c[i];
    o->responses += c->responses;
    o->failures += c->failures;
    o->resets += c->resets;
    o->refused += c->refused;
    o->down_ms += (double)c->down_ns / 1e6;
    for (size_t k = 0; k < c->latency_us.n; k++)
      bench_samples_add(&o->lat, c->latency_us.v[k]);
    if (c->first_error[0])
      printf("  (%s client, first failure: %s)\n",
             i == 0 ? "keep-alive" : "fresh", c->first_error);
  }
  o->ka_connects = atomic_load(&l->cl.c[0].connects);
}

static void report(const char *phase, const outcome *o) {
  char m[128];
  bench_table_header();
  snprintf(m, sizeof(m), "%s: request latency", phase);
  bench_report(m, "us", &o->lat);
  snprintf(m, sizeof(m), "%s: swaps done", phase);
  bench_report_one(m, "count", o->swaps);
  snprintf(m, sizeof(m), "%s: requests served", phase);
  bench_report_one(m, "count", (double)o->responses);
  snprintf(m, sizeof(m), "%s: requests failed", phase);
  bench_report_one(m, "count", (double)o->failures);
  snprintf(m, sizeof(m), "%s: of which reset or closed", phase);
  bench_report_one(m, "count", (double)o->resets);
  snprintf(m, sizeof(m), "%s: of which refused", phase);
  bench_report_one(m, "count", (double)o->refused);
  snprintf(m, sizeof(m), "%s: keep-alive connections opened", phase);
  bench_report_one(m, "count", (double)o->ka_connects);
  snprintf(m, sizeof(m), "%s: unavailable (failure -> success)", phase);
  bench_report_one(m, "ms", o->down_ms);
}

/* ---- phase 1: the host swaps the plugin ------------------------------- */

static int run_hotswap(const char *bin, int swaps, outcome *o) {
  bench_host h;
  load l;
  char line[512], needle[64], from[PATH_MAX + 32], to[PATH_MAX + 32],
      stage[PATH_MAX + 32];
  int done = 0, port, rc = -1;
  uint64_t t0 = 0;

  memset(&l, 0, sizeof(l));
  printf("\nhotswap: %d swaps of http.so under load\n", swaps);
  if (bench_host_init(&h) != 0)
    return -1;
  snprintf(to, sizeof(to), "%s/http.conf", h.plugins);
  FILE *f = fopen(to, "w");
  if (!f || fputs("port = 0\n", f) < 0 || fclose(f) != 0)
    goto out;
  snprintf(from, sizeof(from), "%s/http_v0.so", bin);
  snprintf(to, sizeof(to), "%s/http.so", h.plugins);
  if (link(from, to) != 0 || bench_host_start(&h, NULL) != 0 ||
      bench_host_wait(&h, "listening on 127.0.0.1:", WAIT_MS, line,
                      sizeof(line), NULL) != 0)
    goto out;
  port = atoi(strstr(line, "listening on 127.0.0.1:") + 23);
  if (load_start(&l, port) != 0 || load_catch_up(&l, &h, 0) != 0)
    goto out;
  t0 = bench_now_ns();
  for (int n = 1; n <= swaps; n++) {
    if (bench_host_idle(&h, GAP_MS) != 0)
      break;
    snprintf(from, sizeof(from), "%s/http_v%d.so", bin, n);
    snprintf(needle, sizeof(needle), "http reloaded: version v%d,", n);
    snprintf(stage, sizeof(stage), "%s/http.so", h.stage);
    if (link(from, stage) != 0 || rename(stage, to) != 0)
      break;
    if (bench_host_wait(&h, needle, WAIT_MS, NULL, 0, NULL) != 0 ||
        load_catch_up(&l, &h, n) != 0)
      break;
    done = n;
  }
  bench_host_idle(&h, GAP_MS);
  load_stop(&l);
  rc = bench_host_stop(&h) == 0 && done == swaps ? 0 : -1;
out:
  load_stop(&l);
  outcome_take(o, &l, done, t0 ? (double)(bench_now_ns() - t0) / 1e9 : 0);
  load_free(&l);
  bench_host_close(&h);
  return rc;
}

/* ---- phase 2: entr restarts the whole process --------------------------- */

/* Starts `entr -n -r SERVER DIR` in its own process group, reading the
 * file list (SERVER) from a file, its output into DIR/entr.log. */
static pid_t start_entr(const char *dir, const char *server) {
  char list[PATH_MAX + 64], log[PATH_MAX + 64];
  snprintf(list, sizeof(list), "%s/watch.list", dir);
  snprintf(log, sizeof(log), "%s/entr.log", dir);
  FILE *f = fopen(list, "w");
  if (!f || fprintf(f, "%s\n", server) < 0 || fclose(f) != 0)
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    int in = open(list, O_RDONLY), out = open(log, O_WRONLY | O_CREAT, 0644);
    setpgid(0, 0);
    if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
        dup2(out, 2) < 0)
      _exit(127);
    execlp("entr", "entr", "-n", "-r", server, dir, (char *)NULL);
    _exit(127);
  }
  if (pid > 0)
    setpgid(pid, pid);
  return pid;
}

static int run_entr(const char *bin, int swaps, outcome *o) {
  char dir[PATH_MAX + 32], server[PATH_MAX + 64], from[PATH_MAX + 32],
      tmp[PATH_MAX + 96];
  load l;
  int done = 0, port = bench_free_port(), rc = -1, st;
  pid_t entr = -1;
  uint64_t t0 = 0;

  memset(&l, 0, sizeof(l));
  printf("\nentr -r: %d restarts of the same server as a whole process\n",
         swaps);
  snprintf(dir, sizeof(dir), "%s/entr", bin);
  snprintf(server, sizeof(server), "%s/http_server", dir);
  snprintf(tmp, sizeof(tmp), "%s/http.conf", dir);
  FILE *f = mkdir(dir, 0755) == 0 ? fopen(tmp, "w") : NULL;
  if (!port || !f || fprintf(f, "port = %d\n", port) < 0 || fclose(f) != 0)
    goto out;
  snprintf(from, sizeof(from), "%s/server_v0", bin);
  if (rename(from, server) != 0 || (entr = start_entr(dir, server)) < 0 ||
      load_start(&l, port) != 0 || load_catch_up(&l, NULL, 0) != 0)
    goto out;
  t0 = bench_now_ns();
  for (int n = 1; n <= swaps && !bench_stopped(); n++) {
    usleep(GAP_MS * 1000);
    snprintf(from, sizeof(from), "%s/server_v%d", bin, n);
    /* Moved, not hard-linked: the file replaced must go away (as when a
     * linker writes a new executable), else entr sees no change. */
    if (rename(from, server) != 0 || load_catch_up(&l, NULL, n) != 0)
      break;
    done = n;
  }
  usleep(GAP_MS * 1000);
  load_stop(&l);
  rc = done == swaps ? 0 : -1;
out:
  load_stop(&l);
  outcome_take(o, &l, done, t0 ? (double)(bench_now_ns() - t0) / 1e9 : 0);
  load_free(&l);
  if (entr > 0) {
    kill(-entr, SIGTERM);
    usleep(200000);
    kill(-entr, SIGKILL);
    waitpid(entr, &st, 0);
  }
  if (rc != 0) {
    snprintf(tmp, sizeof(tmp), "tail -n 5 %s/entr.log >&2", dir);
    if (system(tmp) != 0)
      fprintf(stderr, "bench_load: no entr log\n");
  }
  return rc;
}

/* ---- main --------------------------------------------------------------- */

static void side_by_side(const outcome *a, const outcome *b) {
  printf("\nside by side (%d / %d swaps):\n", a->swaps, b->swaps);
  printf("  %-34s %14s %14s\n", "", "hotswap", "entr -r");
  printf("  %-34s %14ld %14ld\n", "requests served", a->responses,
         b->responses);
  printf("  %-34s %14ld %14ld\n", "requests failed", a->failures,
         b->failures);
  printf("  %-34s %14ld %14ld\n", "  of which reset or closed", a->resets,
         b->resets);
  printf("  %-34s %14ld %14ld\n", "  of which refused", a->refused,
         b->refused);
  printf("  %-34s %14ld %14ld\n", "keep-alive connections opened",
         a->ka_connects, b->ka_connects);
  printf("  %-34s %14.1f %14.1f\n", "unavailable, ms (both clients)",
         a->down_ms, b->down_ms);
  printf("  %-34s %14.0f %14.0f\n", "latency p50, us",
         bench_quantile(&a->lat, 0.5), bench_quantile(&b->lat, 0.5));
  printf("  %-34s %14.0f %14.0f\n", "latency p99, us",
         bench_quantile(&a->lat, 0.99), bench_quantile(&b->lat, 0.99));
  printf("  %-34s %14.0f %14.0f\n", "latency max, us",
         bench_quantile(&a->lat, 1.0), bench_quantile(&b->lat, 1.0));
  printf("  %-34s %14.1f %14.1f\n", "phase duration, s", a->seconds,
         b->seconds);
}

int main(void) {
  int swaps = bench_count(100, 10), rc = 0;
  outcome hot, base;
  bench_host scratch;
  char bin[PATH_MAX + 8];

  memset(&hot, 0, sizeof(hot));
  memset(&base, 0, sizeof(base));
  bench_init("bench_load", 600);
  if (bench_host_init(&scratch) != 0)
    return 1;
  snprintf(bin, sizeof(bin), "%s/bin", scratch.root);
  uint64_t t0 = bench_now_ns();
  if (mkdir(bin, 0755) != 0 || build_all(bin, swaps) != 0) {
    fprintf(stderr, "bench_load: cannot build the versions of %s\n",
            HTTP_SRC);
    bench_host_close(&scratch);
    return 1;
  }
  printf("built %d versions (plugin + executable) in %.1f s\n", swaps + 1,
         (double)(bench_now_ns() - t0) / 1e9);

  if (run_hotswap(bin, swaps, &hot) != 0)
    rc = 1;
  report("hotswap", &hot);

  if (system("command -v entr >/dev/null 2>&1") != 0) {
    printf("\nentr -r: skipped: entr is not installed "
           "(apt-get install entr)\n");
  } else if (!bench_stopped()) {
    if (run_entr(bin, swaps, &base) != 0)
      rc = 1;
    report("entr -r", &base);
    side_by_side(&hot, &base);
  }
  bench_samples_free(&hot.lat);
  bench_samples_free(&base.lat);
  bench_host_close(&scratch);
  return rc;
}
