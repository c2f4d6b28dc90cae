/*
 * bench_responsive.c - does the loop stay responsive while a big host
 * validates? The host holds 100 MiB of touched memory (the ballast plugin:
 * 100 MiB of state, every page written by load(); it is never reloaded,
 * since a validation copies the live state into a memfd) while the small
 * plugin is reloaded RELOADS times. The driver probes the loop with
 * `status` requests over the control socket in a tight loop (connect, send,
 * receive: hs_ctl_request) and reports probe latency while idle and while
 * a reload is under way (rename -> "reloaded" line). Then the same while
 * a ~10 MB plugin (1 MiB of state) is reloaded BIG_RELOADS times: its copy
 * into the cache runs on the copier thread, the copy of its state into
 * its snapshot memfd on the loop.
 *
 * For contrast, measured in this process afterwards, what the host avoids
 * by validating in a zygote's prefaulted spare instead of forking itself:
 * the parent's block in fork() holding 100 MiB touched, the copy-on-write
 * faults when it then rewrites its 100 MiB (the child still alive), and
 * the parent's block in posix_spawn.
 */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "buf.h"
#include "ctl.h"

#define RELOADS 50
#define BIG_RELOADS 10
#define IDLE_PROBE_MS 3000
#define GAP_MS 100
#define WAIT_MS 20000
#define BALLAST (100u << 20)

extern char **environ;

/* One status round trip; returns its latency in us, or -1. */
static double probe(const char *control) {
  hs_buf reply;
  hs_error err;
  int ok = 0;
  hs_buf_init(&reply);
  uint64_t t0 = bench_now_ns();
  int rc = hs_ctl_request(control, "status", "", 5000, &reply, &ok, &err);
  uint64_t t1 = bench_now_ns();
  hs_buf_free(&reply);
  if (rc != 0 || !ok) {
    fprintf(stderr, "bench_responsive: status: %s\n",
            rc ? err.msg : "the host answered with an error");
    return -1;
  }
  return (double)(t1 - t0) / 1e3;
}

static void report_probes(const char *what, const bench_samples *s) {
  char metric[128];
  snprintf(metric, sizeof(metric), "probe %s", what);
  bench_report(metric, "us", s);
}

/* Reloads name (alternating two builds) reloads times, GAP_MS apart,
 * probing the loop from each rename to the "reloaded" line. Returns the
 * number of reloads done. */
static int reload_series(bench_host *h, const char *name,
                         const char *const file[2],
                         const char *const version[2], int reloads,
                         bench_samples *busy, bench_samples *pause) {
  char line[4200], done[128], so[64];
  int n = 0;

  snprintf(so, sizeof(so), "%s.so", name);
  for (int i = 1; i <= reloads && !bench_stopped(); i++) {
    int v = i % 2;
    uint64_t t0;
    if (bench_host_idle(h, GAP_MS) != 0 ||
        bench_host_stage(h, file[v], so) != 0 ||
        bench_host_commit(h, so, &t0) != 0)
      break;
    snprintf(done, sizeof(done), "%s reloaded: version %s,", name, version[v]);
    int seen = 0;
    while (!seen && !bench_stopped() &&
           bench_now_ns() - t0 < (uint64_t)WAIT_MS * 1000000u) {
      double us = probe(h->control);
      if (us < 0)
        return n;
      bench_samples_add(busy, us);
      while (bench_host_line(h, 0, line, sizeof(line), NULL) == 1) {
        if (strstr(line, " rejected: ")) {
          fprintf(stderr, "bench_responsive: %s\n", line);
          return n;
        }
        if (strstr(line, done)) {
          double total, validated, p;
          if (bench_parse_reloaded(line, &total, &validated, &p) == 0)
            bench_samples_add(pause, p);
          seen = 1;
        }
      }
    }
    if (!seen) {
      fprintf(stderr, "bench_responsive: no \"%s\"\n", done);
      break;
    }
    n++;
  }
  return n;
}

/* Probes while idle, then while the small plugin is reloaded, then while
 * the 10 MB plugin is. */
static int host_part(void) {
  static const char *const small[2] = {"small_a.so", "small_b.so"};
  static const char *const big[2] = {"big_a.so", "big_b.so"};
  static const char *const version[2] = {"a", "b"};
  bench_host h;
  bench_samples idle = {0}, busy = {0}, pause = {0}, busy_big = {0},
                pause_big = {0};
  int rc = -1, reloads = bench_count(RELOADS, 5),
      big_reloads = bench_count(BIG_RELOADS, 4);

  if (bench_host_init(&h) != 0)
    return -1;
  if (bench_host_source(&h, small[0]) || bench_host_source(&h, small[1]) ||
      bench_host_source(&h, big[0]) || bench_host_source(&h, big[1]) ||
      bench_host_put(&h, "ballast.so", "ballast.so") ||
      bench_host_put(&h, small[0], "small.so") ||
      bench_host_put(&h, big[0], "big.so") || bench_host_start(&h, NULL) != 0 ||
      bench_host_wait_count(&h, " loaded: version ", 3, WAIT_MS) != 0 ||
      bench_host_idle(&h, 500) != 0)
    goto out;
  bench_proc hp;
  if (bench_proc_read(h.pid, &hp) == 0)
    printf("  host pid %d: VmRSS %ld kB (ballast: 100 MiB of state, "
           "touched)\n",
           (int)h.pid, hp.rss_kb);

  uint64_t end = bench_now_ns() + (uint64_t)IDLE_PROBE_MS * 1000000u;
  while (bench_now_ns() < end && !bench_stopped()) {
    double us = probe(h.control);
    if (us < 0)
      goto out;
    bench_samples_add(&idle, us);
    bench_host_drain(&h);
  }
  int n = reload_series(&h, "small", small, version, reloads, &busy, &pause);
  int nb = reload_series(&h, "big", big, version, big_reloads, &busy_big,
                         &pause_big);
  printf("\nprobes: %zu while idle (%d ms), %zu during %d reloads of the "
         "small plugin, %zu during %d reloads of the 10 MB plugin\n",
         idle.n, IDLE_PROBE_MS, busy.n, n, busy_big.n, nb);
  bench_table_header();
  report_probes("latency, idle", &idle);
  report_probes("latency, reloads of the small plugin", &busy);
  bench_report("swap pause of those reloads", "us", &pause);
  report_probes("latency, reloads of the 10 MB plugin", &busy_big);
  bench_report("swap pause of those reloads (10 MB)", "us", &pause_big);
  rc = n == reloads && nb == big_reloads ? 0 : -1;
  if (bench_host_stop(&h) != 0)
    rc = -1;
out:
  bench_host_close(&h);
  bench_samples_free(&idle);
  bench_samples_free(&busy);
  bench_samples_free(&pause);
  bench_samples_free(&busy_big);
  bench_samples_free(&pause_big);
  return rc;
}

/* Writes one byte per page; volatile, so that no store is optimised
 * away. */
static void touch(volatile unsigned char *p, size_t size, unsigned char v) {
  for (size_t i = 0; i < size; i += 4096)
    p[i] = v;
}

/* fork() and posix_spawn() from a process like the host. */
static int contrast_part(void) {
  bench_samples fork_small = {0}, fork_big = {0}, cow = {0}, plain = {0},
                spawn = {0}, spawn_exit = {0};
  int runs = bench_count(10, 3), rc = -1;

  printf("\ncontrast: this process, %d runs each\n", runs);
  for (int i = 0; i < runs * 2 && !bench_stopped(); i++) {
    uint64_t t0 = bench_now_ns();
    pid_t pid = fork();
    if (pid == 0)
      _exit(0);
    uint64_t t1 = bench_now_ns();
    if (pid < 0)
      goto out;
    waitpid(pid, NULL, 0);
    bench_samples_add(&fork_small, (double)(t1 - t0) / 1e3);
  }

  unsigned char *big = malloc(BALLAST);
  if (!big)
    goto out;
  touch(big, BALLAST, 1);
  for (int i = 0; i < runs && !bench_stopped(); i++) {
    int p[2];
    if (pipe(p) != 0)
      break;
    uint64_t t0 = bench_now_ns();
    pid_t pid = fork();
    if (pid == 0) {
      char c;
      close(p[1]);
      while (read(p[0], &c, 1) < 0) {
      }
      _exit(0);
    }
    uint64_t t1 = bench_now_ns();
    close(p[0]);
    if (pid < 0) {
      close(p[1]);
      break;
    }
    /* The child is alive: every page written now is copied first. */
    touch(big, BALLAST, (unsigned char)(2 + i));
    uint64_t t2 = bench_now_ns();
    close(p[1]);
    waitpid(pid, NULL, 0);
    /* The same writes with the pages our own again. */
    uint64_t t3 = bench_now_ns();
    touch(big, BALLAST, (unsigned char)(100 + i));
    uint64_t t4 = bench_now_ns();
    bench_samples_add(&fork_big, (double)(t1 - t0) / 1e3);
    bench_samples_add(&cow, (double)(t2 - t1) / 1e3);
    bench_samples_add(&plain, (double)(t4 - t3) / 1e3);
  }

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  char *argv[] = {(char *)HS_BENCH_BIN, (char *)"--version", NULL};
  for (int i = 0; i < runs * 2 && !bench_stopped(); i++) {
    pid_t pid;
    uint64_t t0 = bench_now_ns();
    int e = posix_spawn(&pid, HS_BENCH_BIN, &fa, NULL, argv, environ);
    uint64_t t1 = bench_now_ns();
    if (e != 0)
      break;
    waitpid(pid, NULL, 0);
    uint64_t t2 = bench_now_ns();
    bench_samples_add(&spawn, (double)(t1 - t0) / 1e3);
    bench_samples_add(&spawn_exit, (double)(t2 - t0) / 1e3);
  }
  posix_spawn_file_actions_destroy(&fa);
  free(big);

  bench_table_header();
  bench_report("fork(), small parent: parent blocked", "us", &fork_small);
  bench_report("fork(), 100 MiB touched: parent blocked", "us", &fork_big);
  bench_report("rewrite 100 MiB, forked child alive (COW)", "us", &cow);
  bench_report("rewrite 100 MiB, no child", "us", &plain);
  bench_report("posix_spawn(), 100 MiB parent: parent blocked", "us", &spawn);
  bench_report("posix_spawn() -> child exited (hotswap --version)", "us",
               &spawn_exit);
  rc = 0;
out:
  bench_samples_free(&fork_small);
  bench_samples_free(&fork_big);
  bench_samples_free(&cow);
  bench_samples_free(&plain);
  bench_samples_free(&spawn);
  bench_samples_free(&spawn_exit);
  return rc;
}

int main(void) {
  int rc = 0;
  bench_init("bench_responsive", 600);
  printf("\nhost with 100 MiB touched; the small plugin reloaded %d times "
         "and the 10 MB plugin %d times, %d ms apart\n",
         bench_count(RELOADS, 5), bench_count(BIG_RELOADS, 4), GAP_MS);
  if (host_part() != 0)
    rc = 1;
  if (!bench_stopped() && contrast_part() != 0)
    rc = 1;
  return rc;
}
