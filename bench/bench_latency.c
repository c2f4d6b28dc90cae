/*
 * bench_latency.c - from rename(2) of a prebuilt plugin to the first call
 * into its new code, end to end: CLOCK_MONOTONIC just before the rename,
 * and when the new version's load() line ("load reload version V") comes
 * out of the host's stderr, read through a pipe with poll(). Nothing is
 * slept on or polled but that pipe.
 *
 * The host runs with --log-level debug, which splits its share:
 *   copy    change seen -> copied into the cache (copier thread) and the
 *           request sent to the validator (loop)
 *   sandbox request sent -> the validator's verdict
 *   swap    verdict -> swapped (open and prefault on the loader thread,
 *           then the pause)
 * and the rest (inotify delivery, the log line's way to the driver) is
 * end to end minus the host's total.
 *
 * Two series: reloads GAP_MS apart (an edit now and then: the zygote's
 * spare validator is ready), and reloads back to back (the next rename as
 * soon as the previous reload is logged).
 *
 * First, what this machine charges for the hops a reload is made of, so
 * that figures of different days and machines can be compared: a thread
 * and a process woken after GAP_MS asleep and answering at once, as the
 * host wakes its loader thread and its spare validator.
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define GAP_MS 100
#define WAIT_MS 20000

/* ---- this machine's wake-ups ------------------------------------------ */

#define WAKE_RUNS 30

/* Reads one byte from fd, then writes it to out, until fd closes. */
static void echo(int fd, int out) {
  char c;
  while (read(fd, &c, 1) == 1 && write(out, &c, 1) == 1)
    ;
}

static void *echo_thread(void *arg) {
  int *fds = arg;
  echo(fds[0], fds[1]);
  return NULL;
}

/* Round trips of one byte to a peer asleep in read() for GAP_MS, the
 * answer awaited in poll() as the loop does: a thread of this process
 * (over pipes; the loader thread answers through an eventfd) or another
 * process (over a socketpair, as the spare validator is asked). */
static void wake_ups(void) {
  bench_samples thread = {0}, process = {0};
  int to_thread[2], from_thread[2], sp[2];
  pthread_t t;
  pid_t pid;

  /* The process first: a child forked later would hold the thread's pipe
   * open, and the thread would never see it close. */
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
    return;
  if ((pid = fork()) == 0) {
    close(sp[0]);
    echo(sp[1], sp[1]);
    _exit(0);
  }
  close(sp[1]);
  if (pid < 0 || pipe(to_thread) != 0 || pipe(from_thread) != 0) {
    close(sp[0]);
    if (pid > 0)
      waitpid(pid, NULL, 0);
    return;
  }
  int tfds[2] = {to_thread[0], from_thread[1]};
  if (pthread_create(&t, NULL, echo_thread, tfds) != 0) {
    close(sp[0]);
    waitpid(pid, NULL, 0);
    return;
  }
  for (int i = 0; i < WAKE_RUNS && !bench_stopped(); i++) {
    for (int k = 0; k < 2; k++) {
      int out = k ? sp[0] : to_thread[1], in = k ? sp[0] : from_thread[0];
      char c = 'x';
      usleep(GAP_MS * 1000);
      uint64_t t0 = bench_now_ns();
      struct pollfd p = {in, POLLIN, 0};
      if (write(out, &c, 1) != 1 || poll(&p, 1, 5000) != 1 ||
          read(in, &c, 1) != 1)
        break;
      bench_samples_add(k ? &process : &thread,
                        (double)(bench_now_ns() - t0) / 1e3);
    }
  }
  close(to_thread[1]);
  pthread_join(t, NULL);
  close(sp[0]);
  waitpid(pid, NULL, 0);
  close(to_thread[0]);
  close(from_thread[0]);
  close(from_thread[1]);
  printf("\nthis machine: a peer asleep %d ms, woken and answering\n",
         GAP_MS);
  bench_table_header();
  bench_report("machine: thread woken, round trip", "us", &thread);
  bench_report("machine: process woken, round trip", "us", &process);
  bench_samples_free(&thread);
  bench_samples_free(&process);
}

/* ---- reloads ----------------------------------------------------------- */

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
  wake_ups();
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
