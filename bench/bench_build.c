/*
 * bench_build.c - what the host adds to the compiler's own time when it
 * builds a plugin from source (the budget: 10 ms).
 *
 * 1. The compiler alone: the exact command the host runs (same flags, same
 *    output into a cache-like directory), spawned from here.
 * 2. Through the host: a save of the same plugin with new content,
 *    read from the host's own debug line "compiled in X ms" (sandbox
 *    dispatch, fork, exec of the compiler, the compile, the exit status
 *    coming back through the zygote), and end to end from the driver's
 *    clock: rename into place -> "reloaded" (build, validation, swap).
 * The two alternate, N rounds, so that both see the same load. Prints
 * medians with min and max. Usage: bench_build [HOTSWAP_BIN SRC_DIR [N]]
 * (by default the host and the source tree it was built with).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, int n) {
  qsort(v, (size_t)n, sizeof(*v), cmp);
  printf("%-44s median %+8.2f ms  min %+8.2f  max %+8.2f  (n=%d)\n", what,
         v[n / 2], v[0], v[n - 1], n);
}

/* Writes the plugin source with a version string that makes it new. */
static void write_source(const char *path, int version) {
  char tmp[4200];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) {
    perror(tmp);
    exit(1);
  }
  fprintf(f,
          "#include \"hotswap.h\"\n"
          "static int ld(hs_ctx *c, void *s, hs_load_reason r) {\n"
          "  (void)c, (void)s, (void)r;\n  return 0;\n}\n"
          "static void ul(hs_ctx *c, void *s, hs_unload_reason r) {\n"
          "  (void)c, (void)s, (void)r;\n}\n"
          "static const hs_plugin d = {HS_ABI_VERSION, sizeof(hs_plugin),\n"
          "  \"b\", \"v%d\", 1, 8, ld, ul, 0, 0, 0};\n"
          "HS_EXPORT const hs_plugin *hotswap_plugin_entry(const hs_api *a)"
          " {\n  (void)a;\n  return &d;\n}\n",
          version);
  fclose(f);
  rename(tmp, path); /* whole at once: no settle wait in the figures */
}

/* Reads the host's stderr until a line containing needle; returns the line
 * in buf, or exits after 60 s. */
static void wait_line(FILE *in, const char *needle, char *buf, size_t len) {
  double until = now_ms() + 60000;
  while (now_ms() < until) {
    if (!fgets(buf, (int)len, in)) {
      fprintf(stderr, "bench_build: the host went away\n");
      exit(1);
    }
    if (strstr(buf, needle))
      return;
  }
  fprintf(stderr, "bench_build: no \"%s\" within 60 s\n", needle);
  exit(1);
}

int main(int argc, char **argv) {
  if (argc == 2) {
    fprintf(stderr, "usage: bench_build [HOTSWAP_BIN SRC_DIR [N]]\n");
    return 2;
  }
  const char *bin = argc > 2 ? argv[1] : HS_BENCH_BIN;
  const char *src = argc > 2 ? argv[2] : HS_BENCH_SOURCE_DIR;
  int n = argc > 3 ? atoi(argv[3]) : getenv("HOTSWAP_BENCH_QUICK") ? 5 : 21;
  char dir[] = "/tmp/hs-bench-build-XXXXXX", plugins[300], cache[300],
       file[400], inc[4200], here[400], out[400], dep[400];
  double *direct = calloc((size_t)n, sizeof(double));
  double *hosted = calloc((size_t)n, sizeof(double));
  double *e2e = calloc((size_t)n, sizeof(double));
  double *diff = calloc((size_t)n, sizeof(double));

  if (!mkdtemp(dir) || !direct || !hosted || !e2e || !diff)
    return 1;
  snprintf(plugins, sizeof(plugins), "%s/p", dir);
  snprintf(cache, sizeof(cache), "%s/c", dir);
  mkdir(plugins, 0700);
  mkdir(cache, 0700);
  snprintf(file, sizeof(file), "%s/b.c", plugins);
  snprintf(inc, sizeof(inc), "-I%s/include", src);
  snprintf(here, sizeof(here), "-I%s", plugins);
  snprintf(out, sizeof(out), "%s/out.so", cache);
  snprintf(dep, sizeof(dep), "%s/out.d", cache);
  const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";

  /* The host, on the plugin directory. */
  int pipefd[2];
  if (pipe(pipefd) != 0)
    return 1;
  char ctl[400];
  snprintf(ctl, sizeof(ctl), "%s/ctl.sock", dir);
  write_source(file, 0);
  pid_t host = fork();
  if (host == 0) {
    dup2(pipefd[1], 2);
    close(pipefd[0]);
    execl(bin, bin, "--log-level", "debug", "--control", ctl, "--cache-dir",
          cache, plugins, (char *)NULL);
    _exit(127);
  }
  close(pipefd[1]);
  FILE *in = fdopen(pipefd[0], "r");
  char line[4096], alone[400];
  wait_line(in, "b loaded:", line, sizeof(line));
  snprintf(alone, sizeof(alone), "%s/alone.c", dir);

  /* Alternately, so that both see the same load on a shared machine:
   * 1. the compiler alone, the exact command the host runs (on a copy of
   *    the source outside the watched directory); 2. the same through the
   *    host, from its own figure and from the driver's clock. */
  for (int i = 0; i < n; i++) {
    write_source(alone, 1000 + i);
    const char *args[] = {cc,   "-shared", "-fPIC", "-O2",
                          "-g", "-Wall",   "-fvisibility=hidden",
                          "-MMD", inc,     here,    "-MF",
                          dep,  "-o",      out,     alone,
                          NULL};
    pid_t pid;
    double t0 = now_ms();
    if (posix_spawnp(&pid, cc, NULL, NULL, (char *const *)args, environ) !=
        0)
      return 1;
    int st;
    waitpid(pid, &st, 0);
    direct[i] = now_ms() - t0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "bench_build: the compiler failed\n");
      return 1;
    }

    t0 = now_ms();
    write_source(file, i + 1);
    wait_line(in, "b compiled:", line, sizeof(line));
    const char *at = strstr(line, "compiled in ");
    hosted[i] = at ? strtod(at + 12, NULL) : 0;
    wait_line(in, "b reloaded:", line, sizeof(line));
    e2e[i] = now_ms() - t0;
    diff[i] = hosted[i] - direct[i];
  }
  kill(host, SIGTERM);
  waitpid(host, NULL, 0);
  fclose(in);

  printf("compiling a small plugin from source (%s), %d runs each\n", cc, n);
  report("compiler alone (spawned here)", direct, n);
  report("compile inside the host's sandbox", hosted, n);
  report("save -> new version live (end to end)", e2e, n);
  report("host's addition (inside - alone, per round)", diff, n);

  char cmd[400];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : 1;
}
