/*
 * bench_latency.c - from rename(2) of a prebuilt plugin to the first call
 * into its new code, end to end: CLOCK_MONOTONIC just before the rename,
 * and when the new version's load() line ("load reload version V") comes
 * out of the host's stderr, read through a pipe with poll(). Nothing is
 * slept on or polled but that pipe.
 *
 * The host runs with --log-level debug, which splits its share:
 *   copy    change seen -> copied into the cache and the request sent to
 *           the validator (on the loop)
 *   sandbox request sent -> the validator's verdict
 *   swap    verdict -> swapped (open and prefault on the loader thread,
 *           then the pause)
 * and the rest (inotify delivery, the log line's way to the driver) is
 * end to end minus the host's total.
 *
 * Two series: reloads GAP_MS apart (an edit now and then: the zygote's
 * spare validator is ready), and reloads back to back (the next rename as
 * soon as the previous reload is logged).
 */
#include <stdio.h>

#include "bench.h"

#define GAP_MS 100
#define WAIT_MS 20000

static int series(bench_host *h, const char *title, int runs, int gap_ms,
                  int *variant) {
  static const char *const file[2] = {"small_a.so", "small_b.so"};
  static const char *const version[2] = {"a", "b"};
  bench_samples e2e = {0}, logged = {0}, copy = {0}, sandbox = {0}, swap = {0},
                pause = {0}, rest = {0};
  char metric[128];
  bench_reload r;
  int done = 0;

  if (gap_ms)
    printf("\n%s: %d reloads, %d ms apart\n", title, runs, gap_ms);
  else
    printf("\n%s: %d reloads, back to back\n", title, runs);
  for (int i = 0; i < runs; i++) {
    int v = *variant = !*variant;
    if ((gap_ms && bench_host_idle(h, gap_ms) != 0) ||
        bench_host_stage(h, file[v], "small.so") != 0 ||
        bench_host_reload(h, "small", version[v], WAIT_MS, &r) != 0)
      break;
    double e2e_ms = (double)(r.load_ns - r.rename_ns) / 1e6;
    bench_samples_add(&e2e, e2e_ms);
    bench_samples_add(&logged, (double)(r.done_ns - r.rename_ns) / 1e6);
    if (r.copy_us >= 0)
      bench_samples_add(&copy, r.copy_us / 1e3);
    if (r.verdict_us >= 0)
      bench_samples_add(&sandbox, r.verdict_us / 1e3);
    bench_samples_add(&swap, r.total_ms - r.validated_ms);
    bench_samples_add(&pause, r.pause_us);
    bench_samples_add(&rest, e2e_ms - r.total_ms);
    done++;
  }
  bench_table_header();
#define ROW(what, unit, s)                                                     \
  do {                                                                         \
    snprintf(metric, sizeof(metric), "%s: %s", title, what);                   \
    bench_report(metric, unit, s);                                             \
  } while (0)
  ROW("rename -> new code runs", "ms", &e2e);
  ROW("rename -> \"reloaded\" line", "ms", &logged);
  ROW("host: seen -> copied, request sent", "ms", &copy);
  ROW("host: sandbox verdict", "ms", &sandbox);
  ROW("host: verdict -> swapped", "ms", &swap);
  ROW("host: of which the loop paused", "us", &pause);
  ROW("outside the host's figures", "ms", &rest);
#undef ROW
  bench_samples_free(&e2e);
  bench_samples_free(&logged);
  bench_samples_free(&copy);
  bench_samples_free(&sandbox);
  bench_samples_free(&swap);
  bench_samples_free(&pause);
  bench_samples_free(&rest);
  return done == runs ? 0 : -1;
}

int main(void) {
  static const char *const args[] = {"--log-level", "debug", NULL};
  bench_host h;
  int rc = 1, variant = 0;

  bench_init("bench_latency", 600);
  if (bench_host_init(&h) != 0)
    return 1;
  if (bench_host_source(&h, "small_a.so") ||
      bench_host_source(&h, "small_b.so") ||
      bench_host_put(&h, "small_a.so", "small.so") ||
      bench_host_start(&h, args) != 0 ||
      bench_host_wait(&h, "small loaded: version a,", WAIT_MS, NULL, 0, NULL) !=
          0)
    goto out;
  rc = 0;
  if (series(&h, "spaced", bench_count(200, 20), GAP_MS, &variant) != 0)
    rc = 1;
  if (!bench_stopped() &&
      series(&h, "back to back", bench_count(50, 10), 0, &variant) != 0)
    rc = 1;
  if (bench_host_stop(&h) != 0)
    rc = 1;
out:
  bench_host_close(&h);
  return rc;
}
