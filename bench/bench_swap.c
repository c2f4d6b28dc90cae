/*
 * bench_swap.c - how long a reload stops the host's loop: the host's own
 * "paused the loop Z us" figure (old unload -> state -> new load, with the
 * new image opened and prefaulted beforehand by the loader thread), for
 *   (a) the small plugin (16 bytes of state), >= 200 reloads, and
 *   (b) a ~10 MB plugin with 1 MiB of state, >= 50 reloads, and
 *   (c) the same 1 MiB of state in a small file, to tell the state's share
 *       from the file's.
 * Two builds that differ in their version string are renamed into place in
 * turn; each reload is awaited through its "reloaded" line. A pause of
 * GAP_MS between reloads stands for the time between two edits, so that
 * every reload finds the host quiet (bench_latency also measures reloads
 * back to back).
 *
 * `bench_swap A.so B.so [RELOADS]` runs two other builds from the bench
 * plugin directory instead; $HOTSWAP_BENCH_VERBOSE prints every reload.
 *
 * Also printed, from the same reloads: from the change seen to the request
 * sent to the validator (the copy into the cache, on the copier thread;
 * the state's snapshot, on the loop), and the total from rename to the
 * "reloaded" line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "buf.h"
#include "ctl.h"

#define GAP_MS 100
#define WAIT_MS 20000

typedef struct swap_case {
  const char *title;   /* for the figure names */
  const char *file[2]; /* the two builds, alternated */
  const char *version[2];
  int reloads;
} swap_case;

/* last_reload.pause_us from status --json, or -1. */
static long status_pause_us(const bench_host *h, const char *name) {
  hs_buf reply;
  hs_error err;
  int ok = 0;
  long v = -1;
  char key[128];
  hs_buf_init(&reply);
  if (hs_ctl_request(h->control, "status", "json", 5000, &reply, &ok, &err) ==
          0 &&
      ok && reply.data) {
    snprintf(key, sizeof(key), "\"name\":\"%s\"", name);
    const char *p = strstr(reply.data, key);
    p = p ? strstr(p, "\"pause_us\":") : NULL;
    if (p)
      sscanf(p, "\"pause_us\":%ld", &v);
  }
  hs_buf_free(&reply);
  return v;
}

static int run_case(const swap_case *c) {
  static const char *const args[] = {"--log-level", "debug", NULL};
  bench_host h;
  bench_samples pause = {0}, copy = {0}, total = {0};
  char needle[128], metric[128];
  bench_reload r;
  int rc = -1, done = 0;

  printf("\n%s: %d reloads, %d ms apart\n", c->title, c->reloads, GAP_MS);
  if (bench_host_init(&h) != 0)
    return -1;
  if (bench_host_source(&h, c->file[0]) || bench_host_source(&h, c->file[1]) ||
      bench_host_put(&h, c->file[0], "plugin.so") ||
      bench_host_start(&h, args) != 0)
    goto out;
  snprintf(needle, sizeof(needle), "plugin loaded: version %s",
           c->version[0] ? c->version[0] : "");
  if (bench_host_wait(&h, needle, WAIT_MS, NULL, 0, NULL) != 0)
    goto out;
  for (int i = 1; i <= c->reloads; i++) {
    int v = i % 2;
    if (bench_host_idle(&h, GAP_MS) != 0 ||
        bench_host_stage(&h, c->file[v], "plugin.so") != 0 ||
        bench_host_reload(&h, "plugin", c->version[v], WAIT_MS, &r) != 0)
      break;
    if (getenv("HOTSWAP_BENCH_VERBOSE"))
      printf("  reload %3d: pause %6.0f us, copy %7.0f us, verdict %7.0f us, "
             "total %6.1f ms\n",
             i, r.pause_us, r.copy_us, r.verdict_us,
             (double)(r.done_ns - r.rename_ns) / 1e6);
    bench_samples_add(&pause, r.pause_us);
    if (r.copy_us >= 0)
      bench_samples_add(&copy, r.copy_us);
    bench_samples_add(&total, (double)(r.done_ns - r.rename_ns) / 1e6);
    done = i;
  }
  if (pause.n >= 3)
    printf("  (the first reloads after start paused the loop %.0f, %.0f, %.0f "
           "us)\n",
           pause.v[0], pause.v[1], pause.v[2]);
  long st = status_pause_us(&h, "plugin");
  printf("  (status --json after the last reload: last_reload.pause_us = %ld; "
         "the log said %.0f)\n",
         st, pause.n ? pause.v[pause.n - 1] : -1.0);
  rc = bench_host_stop(&h) == 0 && done == c->reloads ? 0 : -1;
  bench_table_header();
  snprintf(metric, sizeof(metric), "%s: swap pause (paused the loop)",
           c->title);
  bench_report(metric, "us", &pause);
  snprintf(metric, sizeof(metric), "%s: seen -> copied, request sent",
           c->title);
  bench_report(metric, "us", &copy);
  snprintf(metric, sizeof(metric), "%s: rename -> reloaded line", c->title);
  bench_report(metric, "ms", &total);
out:
  bench_host_close(&h);
  bench_samples_free(&pause);
  bench_samples_free(&copy);
  bench_samples_free(&total);
  return rc;
}

int main(int argc, char **argv) {
  swap_case cases[] = {
      {"small (16 B state)",
       {"small_a.so", "small_b.so"},
       {"a", "b"},
       bench_count(200, 20)},
      {"10 MB plugin, 1 MiB state",
       {"big_a.so", "big_b.so"},
       {"a", "b"},
       bench_count(50, 5)},
      {"16 kB plugin, 1 MiB state",
       {"state1m_a.so", "state1m_b.so"},
       {"a", "b"},
       bench_count(50, 5)},
  };
  size_t ncases = sizeof(cases) / sizeof(cases[0]);
  int rc = 0;

  if (argc == 3 || argc == 4) {
    /* bench_swap A.so B.so [RELOADS]: two builds of another plugin from
     * the bench plugin directory, for experiments. */
    cases[0] = (swap_case){"custom",
                           {argv[1], argv[2]},
                           {NULL, NULL},
                           argc == 4 ? atoi(argv[3]) : 50};
    ncases = 1;
  } else if (argc != 1) {
    fprintf(stderr, "usage: bench_swap [A.so B.so [RELOADS]]\n");
    return 2;
  }
  bench_init("bench_swap", 600);
  for (size_t i = 0; i < ncases; i++) {
    if (bench_stopped())
      break;
    if (run_case(&cases[i]) != 0)
      rc = 1;
  }
  return rc;
}
