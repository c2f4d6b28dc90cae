/*
 * bench.h - what the benchmarks (bench/bench_*.c) share: a real host run on
 * a temporary directory with its log read through a pipe, plugin files put
 * into place by rename(2), figures read from /proc, and samples reported as
 * median, min, max and N.
 *
 * Not a test library: nothing here asserts a duration. Every wait is
 * bounded, and a benchmark's whole run is bounded by the budget given to
 * bench_init (SIGALRM, like Ctrl-C, makes every wait return -1, so that the
 * benchmark cleans up and ends).
 */
#ifndef HS_BENCH_H
#define HS_BENCH_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- the run ----------------------------------------------------------- */

/* Sets up one benchmark program: a header line naming it, Ctrl-C/SIGTERM
 * and a budget of budget_s seconds (SIGALRM) that interrupt every wait, and
 * the results file named by $HOTSWAP_BENCH_RESULTS (appended, one TSV row
 * per figure) when set. */
void bench_init(const char *name, unsigned budget_s);

/* 1 once Ctrl-C, SIGTERM or the budget has interrupted the run. */
int bench_stopped(void);

/* n, or n / 10 (at least min) when $HOTSWAP_BENCH_QUICK is set: for a
 * quick look, not for figures. */
int bench_count(int n, int min);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

/* ---- samples ----------------------------------------------------------- */

typedef struct bench_samples {
  double *v; /* owned */
  size_t n;
  size_t cap;
} bench_samples;

/* Appends x (a failed allocation drops it and says so). */
void bench_samples_add(bench_samples *s, double x);
void bench_samples_free(bench_samples *s);

/* The p-quantile (0 < p <= 1, nearest rank) of s; 0 when s is empty. */
double bench_quantile(const bench_samples *s, double p);

/* Prints the column header of the figure rows. */
void bench_table_header(void);

/* Prints one figure row (median, p99 when N >= 100, min, max, N, unit)
 * and appends it to the results file. Nothing when s is empty. */
void bench_report(const char *metric, const char *unit, const bench_samples *s);

/* A figure that is one number (a count, a size): printed and recorded with
 * N = 1. */
void bench_report_one(const char *metric, const char *unit, double value);

/* The same, only recorded in the results file (the caller prints it its
 * own way). */
void bench_record_one(const char *metric, const char *unit, double value);

/* ---- the host ---------------------------------------------------------- */

typedef struct bench_host {
  char root[PATH_MAX];    /* the mkdtemp'd directory */
  char plugins[PATH_MAX]; /* root/plugins: the watched directory */
  char stage[PATH_MAX];   /* root/stage: files waiting to be renamed in */
  char src[PATH_MAX];     /* root/src: copies of the prebuilt plugins */
  char cache[PATH_MAX];   /* root/cache: the host's --cache-dir */
  char control[PATH_MAX]; /* root/ctl.sock */
  pid_t pid;              /* the host, 0 when none runs */
  int out;                /* read end of its stdout+stderr pipe, or -1 */
  char buf[1 << 16];      /* bytes read and not yet returned as lines */
  size_t len;
  uint64_t stamp_ns; /* when the complete lines in buf were read */
  char last[8][512]; /* the last lines read, for error messages */
  unsigned nlast;
  char bin[PATH_MAX]; /* the executable bench_host_start runs; "": the
                         built hotswap (HS_BENCH_BIN) */
} bench_host;

/* Creates the temporary tree. Returns 0, or -1 with a message. */
int bench_host_init(bench_host *h);

/* Kills a host still running (its process group), closes the pipe and
 * removes the tree. Harmless on a closed host. */
void bench_host_close(bench_host *h);

/* Copies the prebuilt plugin file (a name in the bench plugin directory,
 * "small_a.so") into h->src, once. Returns 0 or -1. */
int bench_host_source(bench_host *h, const char *file);

/* Hard-links h->src/file as h->stage/name, ready for bench_host_commit.
 * Returns 0 or -1. */
int bench_host_stage(bench_host *h, const char *file, const char *name);

/* Renames h->stage/name over h->plugins/name; *t_ns (if not NULL) is
 * CLOCK_MONOTONIC just before rename(2). Returns 0 or -1. */
int bench_host_commit(bench_host *h, const char *name, uint64_t *t_ns);

/* bench_host_stage + bench_host_commit. */
int bench_host_put(bench_host *h, const char *file, const char *name);

/* Starts the host on h->plugins, its stdout and stderr into a pipe:
 *   hotswap --control C --cache-dir D [args...] PLUGINS
 * (hotswap is h->bin when set, else the built one; it is also argv[0]).
 * args is NULL or NULL-terminated. Waits for "hotswap started:". Returns 0,
 * or -1 (the host is then killed). */
int bench_host_start(bench_host *h, const char *const *args);

/* Sends SIGTERM, reads the log to its end and reaps the host (SIGKILL to
 * its group after 10 s). Returns its exit status, or -1. */
int bench_host_stop(bench_host *h);

/* Reads the next complete log line into line (cut to size, no newline)
 * and *stamp_ns (if not NULL): CLOCK_MONOTONIC when poll() reported the
 * bytes that completed it. Waits at most timeout_ms (< 0: no limit).
 * Returns 1 for a line, 0 on timeout, -1 at end of file or when the run was
 * interrupted. */
int bench_host_line(bench_host *h, int timeout_ms, char *line, size_t size,
                    uint64_t *stamp_ns);

/* Reads lines until one contains needle, within timeout_ms. A line with
 * " rejected: " or " error " ends the wait with -1 (printed). Returns 0
 * with line and *stamp_ns filled like bench_host_line, or -1 (the reason
 * and the last lines are printed). */
int bench_host_wait(bench_host *h, const char *needle, int timeout_ms,
                    char *line, size_t size, uint64_t *stamp_ns);

/* Waits until count lines containing needle have been read, within
 * timeout_ms (rejections end it as in bench_host_wait). Returns 0 or -1. */
int bench_host_wait_count(bench_host *h, const char *needle, int count,
                          int timeout_ms);

/* Reads and drops log lines for ms milliseconds: the driver sleeps in
 * poll() on the pipe. Returns 0, or -1 when the log ended or the run was
 * interrupted. */
int bench_host_idle(bench_host *h, int ms);

/* Reads and drops what is already in the pipe, without waiting. */
void bench_host_drain(bench_host *h);

/* One reload through a rename, as the host logged it. */
typedef struct bench_reload {
  uint64_t rename_ns;  /* CLOCK_MONOTONIC just before rename(2) */
  uint64_t load_ns;    /* the new code's "load reload version V" arrived */
  uint64_t done_ns;    /* the "NAME reloaded:" line arrived */
  double copy_us;      /* debug: change seen -> copied into the cache */
  double verdict_us;   /* debug: request sent -> verdict of the validator */
  double total_ms;     /* change seen -> swapped */
  double validated_ms; /* change seen -> verdict */
  double pause_us;     /* the loop paused for the swap */
} bench_reload;

/* Renames h->stage/NAME.so (staged by the caller) into place and reads
 * the log until "NAME reloaded: version VERSION,", collecting the lines of
 * that reload (copy_us and verdict_us are -1 without --log-level debug).
 * A NULL version matches any. Returns 0, or -1 on a rejection, a timeout
 * or an interruption. */
int bench_host_reload(bench_host *h, const char *name, const char *version,
                      int timeout_ms, bench_reload *r);

/* Files in the host's cache directories (root/cache/hotswap-*), -1 on
 * error. */
int bench_host_cache_files(const bench_host *h);

/* Parses a "NAME reloaded:" or "NAME loaded:" line: "in X ms (validated in
 * Y ms, paused the loop Z us)". Returns 0 or -1. */
int bench_parse_reloaded(const char *line, double *total_ms,
                         double *validated_ms, double *pause_us);

/* The number after marker in line ("copied into the cache " -> 1055).
 * Returns 0 or -1. */
int bench_parse_after(const char *line, const char *marker, double *value);

/* ---- an HTTP client for the http example (plugins/http.c) ------------- */

/* Connects to 127.0.0.1:port with TCP_NODELAY and send and receive
 * timeouts of timeout_s. Returns the fd, or -1 with *err (an errno) and
 * *what (a static word: "socket", "connect"). */
int bench_http_connect(int port, int timeout_s, int *err, const char **what);

/* Sends "GET /" on fd and reads the whole response (by its
 * Content-Length); copies its body into body (NUL-terminated, cut to
 * size). Returns 0 for a complete 200 response, or -1 with *err (an errno;
 * 0 for a protocol error, ECONNRESET when closed before a response,
 * ETIMEDOUT after the receive timeout) and *what (a static word: "send",
 * "recv", "closed before a response", "short read", "status or headers",
 * "body", "response too large"). */
int bench_http_get(int fd, char *body, size_t size, int *err,
                   const char **what);

/* ---- HTTP load: two client threads -------------------------------------- */

/* A client's settings after a failure and between fresh connections. */
#define BENCH_CLIENT_TIMEOUT_S 5      /* a response slower than this fails */
#define BENCH_CLIENT_FRESH_US 1000    /* between two fresh connections */
#define BENCH_CLIENT_RETRY_MS 5       /* after a failure */

typedef struct bench_client bench_client;

/* What a benchmark counts, called on the client's thread: begin before
 * each attempt (may be NULL), served with a 200 page's body (the attempt
 * began at t0), failed with an errno (0: a protocol error) and the step
 * (see bench_http_get). */
typedef struct bench_client_ops {
  void (*begin)(bench_client *c, uint64_t t0);
  void (*served)(bench_client *c, uint64_t t0, const char *body);
  void (*failed)(bench_client *c, int err, const char *what);
} bench_client_ops;

struct bench_client {
  int port;
  int keepalive;        /* 1: one connection, reopened after a failure;
                           0: a fresh connection per request */
  atomic_long connects; /* connections opened */
  const bench_client_ops *ops;
  void *data;           /* the benchmark's record of this client */
  atomic_int *stop;
};

/* Two clients on 127.0.0.1:port, c[0] keep-alive and c[1] fresh, each
 * sending the next GET / as soon as the previous response is complete. */
typedef struct bench_clients {
  atomic_int stop;
  bench_client c[2];
  pthread_t th[2];
  int started;
} bench_clients;

/* Starts both (the run's signals blocked in their threads), data[i] as
 * c[i].data. Returns 0, or -1 when a thread could not start (those that
 * did are running: stop them). */
int bench_clients_start(bench_clients *l, int port,
                        const bench_client_ops *ops, void *const data[2]);

/* Stops and joins the clients. Harmless when none runs. */
void bench_clients_stop(bench_clients *l);

/* A loopback port that was free a moment ago (bound and released); 0 on
 * failure. */
int bench_free_port(void);

/* ---- /proc ------------------------------------------------------------- */

typedef struct bench_proc {
  uint64_t cpu_ticks; /* utime + stime, all threads (clock ticks) */
  uint64_t run_ns;    /* on-CPU time, all threads (schedstat); 0 if none */
  uint64_t vcsw;      /* voluntary context switches, all threads */
  uint64_t ivcsw;     /* involuntary context switches, all threads */
  long rss_kb;        /* VmRSS */
  int threads;
} bench_proc;

/* Samples pid. Returns 0, or -1 when it is gone. */
int bench_proc_read(pid_t pid, bench_proc *p);

/* The children of pid (by the parent field of /proc/N/stat), at most max.
 * Returns how many. */
int bench_proc_children(pid_t pid, pid_t *out, int max);

/* Lines of /proc/PID/maps, entries of /proc/PID/fd; -1 on error. */
int bench_proc_maps(pid_t pid);
int bench_proc_fds(pid_t pid);

/* Waits (up to timeout_ms, the host's log drained meanwhile) until the
 * host holds its spare validator: the zygote hands one over 20 ms after
 * the last validation, with a socket and a pidfd, so fd counts taken
 * before and after compare. Returns 0, or -1 on timeout. */
int bench_host_settled(bench_host *h, int timeout_ms);

/* Clock ticks per second (for cpu_ticks). */
long bench_ticks_per_s(void);

#endif /* HS_BENCH_H */
