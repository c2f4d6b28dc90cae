/* bench.c - what the benchmarks share; see bench.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strcasestr */
#endif

#include "bench.h"
#include "proc.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ARGV_MAX 32

static volatile sig_atomic_t g_stop; /* the signal that stopped the run */
static const char *g_name = "bench";
static FILE *g_results;

/* ---- the run ----------------------------------------------------------- */

static void on_stop(int sig) { g_stop = sig; }

void bench_init(const char *name, unsigned budget_s) {
  struct sigaction sa;
  const char *path = getenv("HOTSWAP_BENCH_RESULTS");

  g_name = name;
  setvbuf(stdout, NULL, _IOLBF, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_stop; /* no SA_RESTART: waits return EINTR */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGALRM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  alarm(budget_s);
  if (path && path[0] && !(g_results = fopen(path, "ae")))
    fprintf(stderr, "%s: cannot append to %s: %s\n", name, path,
            strerror(errno));
  char load[64] = "?";
  FILE *f = fopen("/proc/loadavg", "re");
  if (f) {
    if (!fgets(load, sizeof(load), f))
      snprintf(load, sizeof(load), "?");
    load[strcspn(load, "\n")] = '\0';
    fclose(f);
  }
  printf("== %s (budget %u s; load average now: %s)%s\n", name, budget_s, load,
         getenv("HOTSWAP_BENCH_QUICK") ? " [quick: fewer runs]" : "");
}

int bench_stopped(void) {
  static int said;
  if (g_stop && !said) {
    said = 1;
    fprintf(stderr, "%s: %s; stopping\n", g_name,
            g_stop == SIGALRM ? "the time budget is used up" : "interrupted");
  }
  return g_stop != 0;
}

int bench_count(int n, int min) {
  const char *q = getenv("HOTSWAP_BENCH_QUICK");
  if (!q || !q[0])
    return n;
  return n / 10 > min ? n / 10 : min;
}

uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- samples ----------------------------------------------------------- */

void bench_samples_add(bench_samples *s, double x) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    double *v = realloc(s->v, cap * sizeof(*v));
    if (!v) {
      fprintf(stderr, "%s: out of memory for samples\n", g_name);
      return;
    }
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = x;
}

void bench_samples_free(bench_samples *s) {
  free(s->v);
  memset(s, 0, sizeof(*s));
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bench_quantile(const bench_samples *s, double p) {
  if (s->n == 0)
    return 0;
  double *v = malloc(s->n * sizeof(*v));
  if (!v)
    return NAN;
  memcpy(v, s->v, s->n * sizeof(*v));
  qsort(v, s->n, sizeof(*v), cmp_double);
  size_t rank = (size_t)ceil(p * (double)s->n);
  double q = v[rank > 0 ? rank - 1 : 0];
  free(v);
  return q;
}

void bench_table_header(void) {
  printf("  %-50s %10s %10s %10s %10s %6s  %s\n", "figure", "median", "p99",
         "min", "max", "N", "unit");
}

static void row(const char *metric, const char *unit, double med, double p99,
                double min, double max, size_t n, int print) {
  char p99s[32];
  if (n >= 100)
    snprintf(p99s, sizeof(p99s), "%.1f", p99);
  else
    snprintf(p99s, sizeof(p99s), "-");
  if (print)
    printf("  %-50s %10.1f %10s %10.1f %10.1f %6zu  %s\n", metric, med, p99s,
           min, max, n, unit);
  if (g_results) {
    fprintf(g_results, "%s\t%s\t%s\t%.1f\t%s\t%.1f\t%.1f\t%zu\n", g_name,
            metric, unit, med, p99s, min, max, n);
    fflush(g_results);
  }
}

void bench_report(const char *metric, const char *unit,
                  const bench_samples *s) {
  if (s->n == 0) {
    printf("  %-50s (no samples)\n", metric);
    return;
  }
  row(metric, unit, bench_quantile(s, 0.5), bench_quantile(s, 0.99),
      bench_quantile(s, 1.0 / (double)s->n), bench_quantile(s, 1.0), s->n, 1);
}

void bench_report_one(const char *metric, const char *unit, double value) {
  row(metric, unit, value, 0, value, value, 1, 1);
}

void bench_record_one(const char *metric, const char *unit, double value) {
  row(metric, unit, value, 0, value, value, 1, 0);
}

/* ---- files ------------------------------------------------------------- */

static int join(char *out, size_t size, const char *a, const char *b) {
  int n = snprintf(out, size, "%s/%s", a, b);
  return n < 0 || (size_t)n >= size ? -1 : 0;
}

static int copy_file(const char *from, const char *to) {
  char buf[1 << 16];
  int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, rc = -1;
  if (in < 0) {
    fprintf(stderr, "%s: %s: %s\n", g_name, from, strerror(errno));
    return -1;
  }
  out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0)
    goto done;
  for (;;) {
    ssize_t n = read(in, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      goto done;
    if (n == 0)
      break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        goto done;
      off += w;
    }
  }
  rc = 0;
done:
  if (rc != 0)
    fprintf(stderr, "%s: copy %s to %s: %s\n", g_name, from, to,
            strerror(errno));
  close(in);
  if (out >= 0)
    close(out);
  return rc;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw) {
  (void)st, (void)ftw;
  if (flag == FTW_DP)
    rmdir(path);
  else
    unlink(path);
  return 0;
}

/* ---- the host ---------------------------------------------------------- */

int bench_host_init(bench_host *h) {
  const char *tmp = getenv("TMPDIR");
  memset(h, 0, sizeof(*h));
  h->out = -1;
  /* The control socket's path must fit in sun_path (108 bytes). */
  if (!tmp || tmp[0] != '/' || strlen(tmp) > 60)
    tmp = "/tmp";
  snprintf(h->root, sizeof(h->root), "%s/hotswap-bench-XXXXXX", tmp);
  if (!mkdtemp(h->root)) {
    fprintf(stderr, "%s: mkdtemp %s: %s\n", g_name, h->root, strerror(errno));
    h->root[0] = '\0';
    return -1;
  }
  if (join(h->plugins, sizeof(h->plugins), h->root, "plugins") ||
      join(h->stage, sizeof(h->stage), h->root, "stage") ||
      join(h->src, sizeof(h->src), h->root, "src") ||
      join(h->cache, sizeof(h->cache), h->root, "cache") ||
      join(h->control, sizeof(h->control), h->root, "ctl.sock") ||
      mkdir(h->plugins, 0755) || mkdir(h->stage, 0755) || mkdir(h->src, 0755) ||
      mkdir(h->cache, 0700)) {
    fprintf(stderr, "%s: cannot prepare %s: %s\n", g_name, h->root,
            strerror(errno));
    bench_host_close(h);
    return -1;
  }
  return 0;
}

void bench_host_close(bench_host *h) {
  if (h->pid > 0) {
    int st;
    kill(-h->pid, SIGKILL);
    kill(h->pid, SIGKILL);
    waitpid(h->pid, &st, 0);
    kill(-h->pid, SIGKILL); /* validators left behind, if any */
    h->pid = 0;
  }
  if (h->out >= 0)
    close(h->out);
  h->out = -1;
  if (h->root[0])
    nftw(h->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  h->root[0] = '\0';
}

int bench_host_source(bench_host *h, const char *file) {
  char from[PATH_MAX], to[PATH_MAX];
  if (join(from, sizeof(from), HS_BENCH_PLUGINS, file) ||
      join(to, sizeof(to), h->src, file))
    return -1;
  if (access(to, F_OK) == 0)
    return 0;
  return copy_file(from, to);
}

int bench_host_stage(bench_host *h, const char *file, const char *name) {
  char from[PATH_MAX], to[PATH_MAX];
  if (join(from, sizeof(from), h->src, file) ||
      join(to, sizeof(to), h->stage, name))
    return -1;
  unlink(to);
  if (link(from, to) != 0) {
    fprintf(stderr, "%s: link %s %s: %s\n", g_name, from, to, strerror(errno));
    return -1;
  }
  return 0;
}

int bench_host_commit(bench_host *h, const char *name, uint64_t *t_ns) {
  char from[PATH_MAX], to[PATH_MAX];
  if (join(from, sizeof(from), h->stage, name) ||
      join(to, sizeof(to), h->plugins, name))
    return -1;
  uint64_t t = bench_now_ns();
  if (rename(from, to) != 0) {
    fprintf(stderr, "%s: rename %s %s: %s\n", g_name, from, to,
            strerror(errno));
    return -1;
  }
  if (t_ns)
    *t_ns = t;
  /* Renaming a link over another link of the same file does nothing. */
  if (access(from, F_OK) == 0) {
    unlink(from);
    fprintf(stderr, "%s: %s is already that file; nothing changed\n", g_name,
            to);
    return -1;
  }
  return 0;
}

int bench_host_put(bench_host *h, const char *file, const char *name) {
  if (bench_host_source(h, file) != 0 || bench_host_stage(h, file, name) != 0)
    return -1;
  return bench_host_commit(h, name, NULL);
}

static void remember(bench_host *h, const char *line) {
  char *to = h->last[h->nlast++ % 8];
  size_t n = strnlen(line, sizeof(h->last[0]) - 1);
  memcpy(to, line, n);
  to[n] = '\0';
}

static void print_last(const bench_host *h) {
  unsigned n = h->nlast < 8 ? h->nlast : 8;
  fprintf(stderr, "%s: the host's last lines:\n", g_name);
  for (unsigned i = h->nlast - n; i < h->nlast; i++)
    fprintf(stderr, "  | %s\n", h->last[i % 8]);
}

int bench_host_start(bench_host *h, const char *const *args) {
  char *argv[ARGV_MAX];
  size_t n = 0;
  const char *bin = h->bin[0] ? h->bin : HS_BENCH_BIN;
  int p[2];

  if (h->pid > 0)
    return -1;
  argv[n++] = (char *)bin;
  argv[n++] = (char *)"--control";
  argv[n++] = h->control;
  argv[n++] = (char *)"--cache-dir";
  argv[n++] = h->cache;
  for (size_t i = 0; args && args[i]; i++) {
    if (n + 2 >= ARGV_MAX)
      return -1;
    argv[n++] = (char *)args[i];
  }
  argv[n++] = h->plugins;
  argv[n] = NULL;

  if (pipe2(p, O_CLOEXEC) != 0)
    return -1;
  /* Room for bursts of log lines while the driver is busy elsewhere. */
  fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(p[0]);
    close(p[1]);
    return -1;
  }
  if (pid == 0) {
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent || null < 0 || dup2(null, 0) < 0 ||
        dup2(p[1], 1) < 0 || dup2(p[1], 2) < 0)
      _exit(126);
    /* Nothing the driver inherited from its own caller: the host's fd
     * count is the host's. */
    close_range(3, ~0u, 0);
    execv(bin, argv);
    _exit(127);
  }
  setpgid(pid, pid);
  close(p[1]);
  h->pid = pid;
  h->out = p[0];
  h->len = 0;
  fcntl(h->out, F_SETFL, fcntl(h->out, F_GETFL) | O_NONBLOCK);
  if (bench_host_wait(h, "hotswap started:", 20000, NULL, 0, NULL) != 0) {
    fprintf(stderr, "%s: the host did not start\n", g_name);
    int st;
    kill(-pid, SIGKILL);
    waitpid(pid, &st, 0);
    h->pid = 0;
    return -1;
  }
  return 0;
}

int bench_host_stop(bench_host *h) {
  char line[512];
  int st, rc = -1;
  uint64_t deadline = bench_now_ns() + 10000000000u;

  if (h->pid <= 0)
    return -1;
  kill(h->pid, SIGTERM);
  /* Keep reading: a host blocked on a full pipe cannot exit. The pipe ends
   * when the host, its zygote and validators are gone. */
  while (h->out >= 0 && bench_now_ns() < deadline) {
    int left = (int)((deadline - bench_now_ns()) / 1000000u);
    int r = bench_host_line(h, left, line, sizeof(line), NULL);
    if (r < 0)
      break;
  }
  for (;;) {
    pid_t w = waitpid(h->pid, &st, WNOHANG);
    if (w == h->pid) {
      rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (w < 0 || bench_now_ns() >= deadline) {
      fprintf(stderr, "%s: the host ignored SIGTERM; killing it\n", g_name);
      kill(-h->pid, SIGKILL);
      waitpid(h->pid, &st, 0);
      break;
    }
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
  }
  kill(-h->pid, SIGKILL);
  h->pid = 0;
  if (h->out >= 0)
    close(h->out);
  h->out = -1;
  return rc;
}

/* Moves the first complete line of buf to line. Returns 1, or 0 when
 * there is none. */
static int take_line(bench_host *h, char *line, size_t size) {
  char *nl = memchr(h->buf, '\n', h->len);
  if (!nl)
    return 0;
  size_t n = (size_t)(nl - h->buf);
  *nl = '\0';
  remember(h, h->buf);
  if (line && size) {
    size_t k = n < size - 1 ? n : size - 1;
    memcpy(line, h->buf, k);
    line[k] = '\0';
  }
  h->len -= n + 1;
  memmove(h->buf, nl + 1, h->len);
  return 1;
}

int bench_host_line(bench_host *h, int timeout_ms, char *line, size_t size,
                    uint64_t *stamp_ns) {
  uint64_t deadline =
      timeout_ms >= 0 ? bench_now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
  int polled = 0;
  for (;;) {
    if (take_line(h, line, size)) {
      if (stamp_ns)
        *stamp_ns = h->stamp_ns;
      return 1;
    }
    if (g_stop || h->out < 0)
      return -1;
    int ms = -1;
    if (timeout_ms >= 0) {
      uint64_t now = bench_now_ns();
      if (now >= deadline && polled)
        return 0;
      ms = now >= deadline ? 0 : (int)((deadline - now + 999999u) / 1000000u);
    }
    polled = 1;
    struct pollfd p = {h->out, POLLIN, 0};
    int r = poll(&p, 1, ms);
    /* No complete line is in buf: every line the coming read completes
     * arrived now. */
    uint64_t stamp = bench_now_ns();
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      continue; /* the deadline check above decides */
    if (h->len == sizeof(h->buf))
      h->len = 0; /* a line longer than the buffer is not the host's */
    ssize_t n = read(h->out, h->buf + h->len, sizeof(h->buf) - h->len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n <= 0) {
      close(h->out);
      h->out = -1;
      return -1;
    }
    h->len += (size_t)n;
    h->stamp_ns = stamp;
  }
}

int bench_host_wait(bench_host *h, const char *needle, int timeout_ms,
                    char *line, size_t size, uint64_t *stamp_ns) {
  char buf[4200];
  uint64_t stamp, deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
  for (;;) {
    uint64_t now = bench_now_ns();
    int left = now < deadline ? (int)((deadline - now) / 1000000u) : 0;
    int r = bench_host_line(h, left, buf, sizeof(buf), &stamp);
    if (r == 1 && strstr(buf, needle)) {
      if (line && size)
        snprintf(line, size, "%s", buf);
      if (stamp_ns)
        *stamp_ns = stamp;
      return 0;
    }
    if (r == 1 && (strstr(buf, " rejected: ") || strstr(buf, " error "))) {
      fprintf(stderr, "%s: while waiting for \"%s\" the host said:\n  %s\n",
              g_name, needle, buf);
      return -1;
    }
    if (r == 0 || r < 0) {
      if (!bench_stopped())
        fprintf(stderr, "%s: %s while waiting for \"%s\"\n", g_name,
                r == 0 ? "timed out" : "the host's log ended", needle);
      print_last(h);
      return -1;
    }
  }
}

int bench_host_wait_count(bench_host *h, const char *needle, int count,
                          int timeout_ms) {
  uint64_t deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
  for (int seen = 0; seen < count; seen++) {
    uint64_t now = bench_now_ns();
    int left = now < deadline ? (int)((deadline - now) / 1000000u) : 0;
    if (bench_host_wait(h, needle, left, NULL, 0, NULL) != 0) {
      fprintf(stderr, "%s: saw %d of %d \"%s\" lines\n", g_name, seen, count,
              needle);
      return -1;
    }
  }
  return 0;
}

int bench_host_idle(bench_host *h, int ms) {
  uint64_t deadline = bench_now_ns() + (uint64_t)ms * 1000000u;
  for (;;) {
    uint64_t now = bench_now_ns();
    if (now >= deadline)
      return 0;
    int r = bench_host_line(h, (int)((deadline - now + 999999u) / 1000000u),
                            NULL, 0, NULL);
    if (r < 0)
      return -1;
  }
}

int bench_host_reload(bench_host *h, const char *name, const char *version,
                      int timeout_ms, bench_reload *r) {
  char line[4200], load[300], done[300], copied[300], verdict[300];
  uint64_t stamp, deadline;

  memset(r, 0, sizeof(*r));
  r->copy_us = r->verdict_us = -1;
  snprintf(load, sizeof(load), "%s log: load reload version %s", name,
           version ? version : "");
  snprintf(done, sizeof(done), "%s reloaded: version %s%s", name,
           version ? version : "", version ? "," : "");
  snprintf(copied, sizeof(copied), "%s validating: ", name);
  snprintf(verdict, sizeof(verdict), "%s validated: ", name);
  snprintf(line, sizeof(line), "%s.so", name);
  if (bench_host_commit(h, line, &r->rename_ns) != 0)
    return -1;
  deadline = r->rename_ns + (uint64_t)timeout_ms * 1000000u;
  for (;;) {
    uint64_t now = bench_now_ns();
    int left = now < deadline ? (int)((deadline - now) / 1000000u) : 0;
    int rc = bench_host_line(h, left, line, sizeof(line), &stamp);
    if (rc != 1) {
      if (!bench_stopped())
        fprintf(stderr, "%s: %s while waiting for \"%s\"\n", g_name,
                rc == 0 ? "timed out" : "the host's log ended", done);
      print_last(h);
      return -1;
    }
    if (strstr(line, " rejected: ") || strstr(line, " error ")) {
      fprintf(stderr, "%s: while waiting for \"%s\" the host said:\n  %s\n",
              g_name, done, line);
      return -1;
    }
    if (strstr(line, load)) {
      r->load_ns = stamp;
    } else if (strstr(line, copied)) {
      bench_parse_after(line, "copied into the cache ", &r->copy_us);
    } else if (strstr(line, verdict)) {
      bench_parse_after(line, "verdict after ", &r->verdict_us);
    } else if (strstr(line, done)) {
      r->done_ns = stamp;
      if (bench_parse_reloaded(line, &r->total_ms, &r->validated_ms,
                               &r->pause_us) != 0) {
        fprintf(stderr, "%s: cannot parse: %s\n", g_name, line);
        return -1;
      }
      if (!r->load_ns) {
        fprintf(stderr, "%s: \"%s\" came before \"%s\"\n", g_name, done, load);
        return -1;
      }
      return 0;
    }
  }
}

void bench_host_drain(bench_host *h) {
  while (bench_host_line(h, 0, NULL, 0, NULL) == 1) {
  }
}

int bench_host_cache_files(const bench_host *h) {
  DIR *d = opendir(h->cache);
  struct dirent *e;
  int n = 0;
  if (!d)
    return -1;
  while ((e = readdir(d))) {
    char sub[PATH_MAX];
    if (strncmp(e->d_name, "hotswap-", 8) != 0 ||
        join(sub, sizeof(sub), h->cache, e->d_name))
      continue;
    DIR *s = opendir(sub);
    struct dirent *f;
    if (!s)
      continue;
    while ((f = readdir(s)))
      if (f->d_name[0] != '.')
        n++;
    closedir(s);
  }
  closedir(d);
  return n;
}

int bench_parse_reloaded(const char *line, double *total_ms,
                         double *validated_ms, double *pause_us) {
  const char *p = strstr(line, ", from ");
  p = p ? strstr(p, " in ") : NULL;
  if (!p || sscanf(p,
                   " in %lf ms (validated in %lf ms, paused the loop %lf "
                   "us)",
                   total_ms, validated_ms, pause_us) != 3)
    return -1;
  return 0;
}

int bench_parse_after(const char *line, const char *marker, double *value) {
  const char *p = strstr(line, marker);
  return p && sscanf(p + strlen(marker), "%lf", value) == 1 ? 0 : -1;
}

/* ---- an HTTP client ------------------------------------------------------ */

int bench_http_connect(int port, int timeout_s, int *err, const char **what) {
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port)};
  struct timeval tv = {.tv_sec = timeout_s};
  int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0) {
    *err = errno;
    *what = "socket";
    return -1;
  }
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    *err = errno;
    *what = "connect";
    close(fd);
    return -1;
  }
  return fd;
}

/* Sets *err and *what. Returns -1. */
static int http_fail(int *err, const char **what, int e, const char *w) {
  *err = e;
  *what = w;
  return -1;
}

int bench_http_get(int fd, char *body, size_t size, int *err,
                   const char **what) {
  static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  char buf[16384], *start = NULL;
  size_t len = 0, need = 0;

  if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1)
    return http_fail(err, what, errno, "send");
  while (!start || len < need) {
    if (len + 1 >= sizeof(buf))
      return http_fail(err, what, 0, "response too large");
    ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return http_fail(err, what, errno == EAGAIN ? ETIMEDOUT : errno, "recv");
    if (n == 0)
      return http_fail(err, what, len ? 0 : ECONNRESET,
                       len ? "short read" : "closed before a response");
    len += (size_t)n;
    buf[len] = '\0';
    if (!start) {
      char *end = strstr(buf, "\r\n\r\n"), *cl;
      if (!end)
        continue;
      *end = '\0';
      if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0 ||
          !(cl = strcasestr(buf, "\nContent-Length:")))
        return http_fail(err, what, 0, "status or headers");
      start = end + 4;
      need = (size_t)(start - buf) + strtoul(cl + 16, NULL, 10);
    }
  }
  if (len != need)
    return http_fail(err, what, 0, "body");
  if (body && size)
    snprintf(body, size, "%s", start);
  return 0;
}

/* ---- /proc ------------------------------------------------------------- */

/* Reads path into buf (NUL-terminated). Returns the length or -1. */
static ssize_t slurp(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  size_t len = 0;
  if (fd < 0)
    return -1;
  while (len + 1 < size) {
    ssize_t n = read(fd, buf + len, size - 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  buf[len] = '\0';
  close(fd);
  return (ssize_t)len;
}

/* The value after "key:" in a status file, or 0. */
static uint64_t status_field(const char *text, const char *key) {
  const char *p = strstr(text, key);
  return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

int bench_proc_read(pid_t pid, bench_proc *p) {
  char path[64], buf[8192];
  memset(p, 0, sizeof(*p));

  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  if (slurp(path, buf, sizeof(buf)) <= 0)
    return -1;
  /* Fields after the command's closing parenthesis: state is field 3;
   * utime and stime are fields 14 and 15. */
  char *s = strrchr(buf, ')');
  unsigned long long ut = 0, st = 0;
  if (!s || sscanf(s + 2,
                   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu "
                   "%llu",
                   &ut, &st) != 2)
    return -1;
  p->cpu_ticks = ut + st;

  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  if (slurp(path, buf, sizeof(buf)) <= 0)
    return -1;
  p->rss_kb = (long)status_field(buf, "VmRSS:");

  snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
  DIR *d = opendir(path);
  struct dirent *e;
  if (!d)
    return -1;
  while ((e = readdir(d))) {
    char tpath[300];
    if (e->d_name[0] == '.')
      continue;
    p->threads++;
    snprintf(tpath, sizeof(tpath), "/proc/%d/task/%s/status", (int)pid,
             e->d_name);
    if (slurp(tpath, buf, sizeof(buf)) > 0) {
      p->vcsw += status_field(buf, "\nvoluntary_ctxt_switches:");
      p->ivcsw += status_field(buf, "nonvoluntary_ctxt_switches:");
    }
    snprintf(tpath, sizeof(tpath), "/proc/%d/task/%s/schedstat", (int)pid,
             e->d_name);
    if (slurp(tpath, buf, sizeof(buf)) > 0)
      p->run_ns += strtoull(buf, NULL, 10);
  }
  closedir(d);
  return 0;
}

int bench_proc_children(pid_t pid, pid_t *out, int max) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  int n = 0;
  if (!d)
    return 0;
  while ((e = readdir(d)) && n < max) {
    char path[300], buf[1024];
    int ppid;
    if (e->d_name[0] < '1' || e->d_name[0] > '9')
      continue;
    snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
    if (slurp(path, buf, sizeof(buf)) <= 0)
      continue;
    char *s = strrchr(buf, ')');
    if (s && sscanf(s + 2, "%*c %d", &ppid) == 1 && ppid == pid)
      out[n++] = (pid_t)atoi(e->d_name);
  }
  closedir(d);
  return n;
}

int bench_proc_maps(pid_t pid) { return proc_maps_count(pid); }

int bench_proc_fds(pid_t pid) { return proc_fd_count(pid); }

int bench_host_settled(bench_host *h, int timeout_ms) {
  for (int waited = 0;
       proc_fd_count_to(h->pid, "anon_inode:[pidfd]") != 1; waited += 10)
    if (waited >= timeout_ms || bench_host_idle(h, 10) != 0)
      return -1;
  return 0;
}

long bench_ticks_per_s(void) { return sysconf(_SC_CLK_TCK); }

/* ---- HTTP load: two client threads -------------------------------------- */

static void *client_main(void *arg) {
  bench_client *c = arg;
  char body[1024];
  const char *what;
  int fd = -1, e;

  while (!atomic_load(c->stop)) {
    uint64_t t0 = bench_now_ns();
    if (c->ops->begin)
      c->ops->begin(c, t0);
    if (fd < 0) {
      fd = bench_http_connect(c->port, BENCH_CLIENT_TIMEOUT_S, &e, &what);
      if (fd < 0) {
        c->ops->failed(c, e, what);
        usleep(BENCH_CLIENT_RETRY_MS * 1000);
        continue;
      }
      atomic_fetch_add(&c->connects, 1);
    }
    int rc = bench_http_get(fd, body, sizeof(body), &e, &what);
    if (rc == 0)
      c->ops->served(c, t0, body);
    else
      c->ops->failed(c, e, what);
    if (rc != 0 || !c->keepalive) {
      close(fd);
      fd = -1;
      usleep(rc != 0 ? BENCH_CLIENT_RETRY_MS * 1000 : BENCH_CLIENT_FRESH_US);
    }
  }
  if (fd >= 0)
    close(fd);
  return NULL;
}

int bench_clients_start(bench_clients *l, int port,
                        const bench_client_ops *ops, void *const data[2]) {
  sigset_t all, old;

  atomic_init(&l->stop, 0);
  l->started = 0;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  for (int i = 0; i < 2; i++) {
    bench_client *c = &l->c[i];
    c->port = port;
    c->keepalive = i == 0;
    atomic_init(&c->connects, 0);
    c->ops = ops;
    c->data = data[i];
    c->stop = &l->stop;
    if (pthread_create(&l->th[i], NULL, client_main, c) != 0)
      break;
    l->started++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return l->started == 2 ? 0 : -1;
}

void bench_clients_stop(bench_clients *l) {
  atomic_store(&l->stop, 1);
  for (int i = 0; i < l->started; i++)
    pthread_join(l->th[i], NULL);
  l->started = 0;
}

/* A free loopback port (bound and released). 0 on failure. */
int bench_free_port(void) {
  struct sockaddr_in sa = {.sin_family = AF_INET};
  socklen_t len = sizeof(sa);
  int port = 0, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
      getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
    port = ntohs(sa.sin_port);
  if (fd >= 0)
    close(fd);
  return port;
}
