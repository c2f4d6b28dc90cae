/*
 * bench_idle.c - what an idle host costs: 20 plugins loaded (copies of the
 * small plugin under 20 names) and nothing changing, for WINDOWS windows of
 * one second. For the host (all its threads), its validator zygote and the
 * zygote's spare validator: wake-ups per second (voluntary + involuntary
 * context switches, /proc/PID/task/TID/status, summed over threads) and
 * CPU time (utime + stime from /proc/PID/stat, and the on-CPU nanoseconds
 * of /proc/PID/task/TID/schedstat). Expected: zero.
 *
 * Then the same with one of the 20 ticking at 10 Hz (a silent tick):
 * the host should wake ~10 times a second and nothing else should. Last,
 * for scale, what one wake-up costs here without the host: a child process
 * looping on epoll_wait() with a 100 ms timeout.
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define PLUGINS 20
#define SETTLE_MS 2000
#define WINDOW_MS 1000
#define WINDOWS 10
#define WAIT_MS 30000
#define MAX_PROCS 8

typedef struct watched {
  char role[32];
  pid_t pid;
  bench_proc first, prev;
  bench_samples wake; /* context switches per window */
  int gone;
} watched;

/* The host, its children (the zygote) and theirs (the spare). */
static int find_procs(pid_t host, watched *w, int max) {
  pid_t kids[MAX_PROCS], grandkids[MAX_PROCS];
  int n = 0;
  memset(w, 0, sizeof(*w) * (size_t)max);
  w[n].pid = host;
  snprintf(w[n++].role, sizeof(w[0].role), "host");
  int nk = bench_proc_children(host, kids, MAX_PROCS);
  for (int i = 0; i < nk && n < max; i++) {
    w[n].pid = kids[i];
    snprintf(w[n++].role, sizeof(w[0].role), nk == 1 ? "zygote" : "child %d",
             i + 1);
    int ng = bench_proc_children(kids[i], grandkids, MAX_PROCS);
    for (int j = 0; j < ng && n < max; j++) {
      w[n].pid = grandkids[j];
      snprintf(w[n++].role, sizeof(w[0].role),
               ng == 1 ? "spare validator" : "validator %d", j + 1);
    }
  }
  return n;
}

static int scenario(const char *title, int ticking) {
  bench_host h;
  watched w[MAX_PROCS];
  char name[32], metric[128];
  int n = 0, rc = -1, windows = 0;
  long hz = bench_ticks_per_s();

  printf("\n%s: %d plugins%s, %d windows of %d ms after %d ms to settle\n",
         title, PLUGINS, ticking ? " (one ticking at 10 Hz)" : "", WINDOWS,
         WINDOW_MS, SETTLE_MS);
  if (bench_host_init(&h) != 0)
    return -1;
  if (bench_host_source(&h, "small_a.so") ||
      bench_host_source(&h, "small_tick.so"))
    goto out;
  for (int i = 0; i < PLUGINS; i++) {
    int tick = ticking && i == PLUGINS - 1;
    snprintf(name, sizeof(name), tick ? "ticker.so" : "idle%02d.so", i);
    if (bench_host_put(&h, tick ? "small_tick.so" : "small_a.so", name))
      goto out;
  }
  if (bench_host_start(&h, NULL) != 0 ||
      bench_host_wait_count(&h, " loaded: version ", PLUGINS, WAIT_MS) != 0 ||
      bench_host_idle(&h, SETTLE_MS) != 0)
    goto out;

  n = find_procs(h.pid, w, MAX_PROCS);
  for (int i = 0; i < n; i++) {
    if (bench_proc_read(w[i].pid, &w[i].first) != 0)
      w[i].gone = 1;
    w[i].prev = w[i].first;
    printf("  %-16s pid %d, %d thread%s, VmRSS %ld kB\n", w[i].role,
           (int)w[i].pid, w[i].first.threads,
           w[i].first.threads == 1 ? "" : "s", w[i].first.rss_kb);
  }
  for (windows = 0; windows < WINDOWS; windows++) {
    if (bench_host_idle(&h, WINDOW_MS) != 0)
      break;
    for (int i = 0; i < n; i++) {
      bench_proc now;
      if (w[i].gone || bench_proc_read(w[i].pid, &now) != 0) {
        if (!w[i].gone)
          printf("  (%s pid %d went away)\n", w[i].role, (int)w[i].pid);
        w[i].gone = 1;
        continue;
      }
      bench_samples_add(&w[i].wake,
                        (double)((now.vcsw + now.ivcsw) -
                                 (w[i].prev.vcsw + w[i].prev.ivcsw)) *
                            1000.0 / WINDOW_MS);
      w[i].prev = now;
    }
  }
  bench_table_header();
  for (int i = 0; i < n; i++) {
    const bench_proc *a = &w[i].first, *b = &w[i].prev;
    snprintf(metric, sizeof(metric), "%.40s: %.31s wake-ups", title, w[i].role);
    bench_report(metric, "/s", &w[i].wake);
    snprintf(metric, sizeof(metric), "%.40s: %.31s CPU (utime+stime), %d s",
             title, w[i].role, windows * WINDOW_MS / 1000);
    bench_report_one(metric, "ms",
                     (double)(b->cpu_ticks - a->cpu_ticks) * 1000.0 /
                         (double)hz);
    snprintf(metric, sizeof(metric), "%.40s: %.31s on-CPU (schedstat), %d s",
             title, w[i].role, windows * WINDOW_MS / 1000);
    bench_report_one(metric, "us", (double)(b->run_ns - a->run_ns) / 1e3);
  }
  if (n < 3)
    printf("  (expected host, zygote and spare validator; found %d "
           "process%s)\n",
           n, n == 1 ? "" : "es");
  rc = windows == WINDOWS ? 0 : -1;
  if (bench_host_stop(&h) != 0)
    rc = -1;
out:
  for (int i = 0; i < n; i++)
    bench_samples_free(&w[i].wake);
  bench_host_close(&h);
  return rc;
}

/* What a wake-up costs on this machine without the host: a child that
 * does nothing but epoll_wait() with a 100 ms timeout. */
static int baseline(void) {
  bench_samples wake = {0};
  bench_proc first, prev, now;
  char metric[128];
  int windows = 0;

  printf("\nbaseline: a bare epoll_wait(100 ms) loop in a child process, %d "
         "windows of %d ms\n",
         WINDOWS, WINDOW_MS);
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    struct epoll_event ev;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (int i = 0; ep >= 0 && i < (WINDOWS + 5) * 1000 / 100; i++)
      epoll_wait(ep, &ev, 1, 100);
    _exit(0);
  }
  poll(NULL, 0, 500);
  if (bench_proc_read(pid, &first) != 0)
    goto out;
  prev = first;
  for (windows = 0; windows < WINDOWS && !bench_stopped(); windows++) {
    poll(NULL, 0, WINDOW_MS);
    if (bench_proc_read(pid, &now) != 0)
      break;
    bench_samples_add(
        &wake, (double)((now.vcsw + now.ivcsw) - (prev.vcsw + prev.ivcsw)) *
                   1000.0 / WINDOW_MS);
    prev = now;
  }
  bench_table_header();
  bench_report("baseline: epoll_wait loop wake-ups", "/s", &wake);
  snprintf(metric, sizeof(metric), "baseline: epoll_wait loop on-CPU, %d s",
           windows * WINDOW_MS / 1000);
  bench_report_one(metric, "us", (double)(prev.run_ns - first.run_ns) / 1e3);
out:
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  bench_samples_free(&wake);
  return windows == WINDOWS ? 0 : -1;
}

int main(void) {
  int rc = 0;
  bench_init("bench_idle", 180);
  if (scenario("idle", 0) != 0)
    rc = 1;
  if (!bench_stopped() && scenario("10 Hz tick", 1) != 0)
    rc = 1;
  if (!bench_stopped() && baseline() != 0)
    rc = 1;
  return rc;
}
