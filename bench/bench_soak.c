/*
 * bench_soak.c - does the host stay the same size over many reloads? The
 * small plugin is reloaded 10,000 times with `hotswap reload small` sent
 * through the control socket (hs_ctl_request; each request waits for the
 * outcome): a forced reload runs the whole pipeline (copy, validation,
 * open, swap) like a changed file, without a rename and its settle. After
 * 0, 1,000 and 10,000 reloads: the host's VmRSS, lines of /proc/PID/maps,
 * open fds and files in its cache, and the zygote's VmRSS and fds.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "buf.h"
#include "ctl.h"

#define RELOADS 10000
#define WAIT_MS 20000

typedef struct counts {
  long loads, warnings, rejected;
} counts;

/* Reads what the host has logged so far. */
static void drain(bench_host *h, counts *c) {
  char line[4200];
  while (bench_host_line(h, 0, line, sizeof(line), NULL) == 1) {
    if (strstr(line, "small log: load reload version"))
      c->loads++;
    else if (strstr(line, " warn "))
      c->warnings++, fprintf(stderr, "  host: %s\n", line);
    else if (strstr(line, " rejected: "))
      c->rejected++, fprintf(stderr, "  host: %s\n", line);
  }
}

/* Waits (bounded) for the old copies to be retired, then reports. */
static int checkpoint(bench_host *h, int reloads, counts *c) {
  char metric[128];
  hs_buf reply;
  hs_error err;
  int ok = 0, files = -1;

  for (int i = 0; i < 500 && (files = bench_host_cache_files(h)) != 1; i++) {
    if (bench_host_idle(h, 10) != 0)
      return -1;
  }
  hs_buf_init(&reply);
  hs_ctl_request(h->control, "status", "", 5000, &reply, &ok, &err);
  hs_buf_free(&reply);
  if (bench_host_settled(h, 5000) != 0)
    fprintf(stderr, "  (the host holds no spare validator after 5 s: "
                    "its fds are counted as they are)\n");
  drain(h, c);

  bench_proc hp, zp;
  pid_t kids[4];
  int nk = bench_proc_children(h->pid, kids, 4);
  if (bench_proc_read(h->pid, &hp) != 0)
    return -1;
  if (nk < 1 || bench_proc_read(kids[0], &zp) != 0)
    memset(&zp, 0, sizeof(zp));
  int maps = bench_proc_maps(h->pid), fds = bench_proc_fds(h->pid);
  int zfds = nk >= 1 ? bench_proc_fds(kids[0]) : -1;

  printf("  after %5d reloads: host VmRSS %6ld kB, maps %4d, fds %3d, "
         "cache files %d; zygote VmRSS %5ld kB, fds %d\n",
         reloads, hp.rss_kb, maps, fds, files, zp.rss_kb, zfds);
#define ONE(what, unit, value)                                                 \
  do {                                                                         \
    snprintf(metric, sizeof(metric), "after %d reloads: %s", reloads, what);   \
    bench_record_one(metric, unit, (double)(value));                           \
  } while (0)
  ONE("host VmRSS", "kB", hp.rss_kb);
  ONE("host maps lines", "", maps);
  ONE("host open fds", "", fds);
  ONE("host cache files", "", files);
  ONE("zygote VmRSS", "kB", zp.rss_kb);
  ONE("zygote open fds", "", zfds);
#undef ONE
  return 0;
}

int main(void) {
  bench_host h;
  bench_samples trip = {0}, pause = {0};
  counts c = {0, 0, 0};
  int rc = 1, total = bench_count(RELOADS, 500), done = 0;
  int first_check = total / 10;

  bench_init("bench_soak", 900);
  printf("\n%d forced reloads (hotswap reload small, over the control "
         "socket)\n",
         total);
  if (bench_host_init(&h) != 0)
    return 1;
  /* No crash grace period: the replaced version is retired at once, so
   * that each checkpoint sees one copy in the cache. */
  static const char *const args[] = {"--crash-grace", "0", NULL};
  if (bench_host_put(&h, "small_a.so", "small.so") ||
      bench_host_start(&h, args) != 0 ||
      bench_host_wait(&h, "small loaded: version a,", WAIT_MS, NULL, 0, NULL) !=
          0)
    goto out;
  if (checkpoint(&h, 0, &c) != 0)
    goto out;
  uint64_t t0 = bench_now_ns();
  for (int i = 1; i <= total && !bench_stopped(); i++) {
    hs_buf reply;
    hs_error err;
    int ok = 0;
    double p;
    hs_buf_init(&reply);
    uint64_t a = bench_now_ns();
    int r = hs_ctl_request(h.control, "reload", "small", WAIT_MS, &reply, &ok,
                           &err);
    uint64_t b = bench_now_ns();
    if (r != 0 || !ok) {
      fprintf(stderr, "bench_soak: reload %d: %s\n", i,
              r            ? err.msg
              : reply.data ? reply.data
                           : "error");
      hs_buf_free(&reply);
      break;
    }
    bench_samples_add(&trip, (double)(b - a) / 1e6);
    if (reply.data && bench_parse_after(reply.data, "pause ", &p) == 0)
      bench_samples_add(&pause, p);
    hs_buf_free(&reply);
    drain(&h, &c);
    done = i;
    if (i % 1000 == 0 || i == total) {
      double s = (double)(bench_now_ns() - t0) / 1e9;
      printf("  %5d reloads, %.1f s, %.0f reloads/s\n", i, s, i / s);
    }
    if ((i == first_check || i == total) && checkpoint(&h, i, &c) != 0)
      break;
  }
  printf("  host log: %ld \"load reload\" lines for %d reloads, %ld "
         "warnings, %ld rejections\n",
         c.loads, done, c.warnings, c.rejected);
  bench_table_header();
  bench_report("reload request round trip", "ms", &trip);
  bench_report("swap pause (from the reply)", "us", &pause);
  rc = done == total && c.loads == done && !c.warnings && !c.rejected ? 0 : 1;
  if (bench_host_stop(&h) != 0)
    rc = 1;
out:
  bench_host_close(&h);
  bench_samples_free(&trip);
  bench_samples_free(&pause);
  return rc;
}
