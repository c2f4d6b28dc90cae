/* harness.c - runs the real host for the integration tests; see harness.h. */
#include "harness.h"
#include "proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

extern char **environ;

#define POLL_MS 2           /* how often waits look again */
#define SCAN_BUF 65536      /* the log is read in chunks of this size */
#define ARGV_MAX 64

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {0, (long)ms * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* 0..255 for an exit, 128 + N for signal N. */
static int decode(int wstatus) {
  if (WIFEXITED(wstatus))
    return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus))
    return 128 + WTERMSIG(wstatus);
  return -1;
}

/* Waits up to timeout_ms for pid. Returns 1 with *wstatus set when it
 * exited, 0 on timeout. */
static int wait_exit(pid_t pid, int *wstatus, unsigned timeout_ms) {
  uint64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    pid_t r = waitpid(pid, wstatus, WNOHANG);
    if (r == pid)
      return 1;
    if (r < 0 && errno != EINTR) {
      *wstatus = 0;
      return 1; /* not our child any more: nothing to wait for */
    }
    if (now_ms() >= deadline)
      return 0;
    sleep_ms(POLL_MS);
  }
}

/* Notes that the host has exited if it has; returns 1 then. */
static int host_reaped(harness *h) {
  int st;
  if (h->pid <= 0)
    return 0;
  if (waitpid(h->pid, &st, WNOHANG) != h->pid)
    return 0;
  h->pid = 0;
  h->exited = 1;
  h->wstatus = st;
  return 1;
}

static int path_join(char *out, size_t size, const char *a, const char *b) {
  int n = snprintf(out, size, "%s/%s", a, b);
  return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* ---- life cycle -------------------------------------------------------- */

int harness_init(harness *h) {
  const char *tmp = getenv("TMPDIR");
  memset(h, 0, sizeof(*h));
  /* The control socket path must fit in sun_path (108 bytes). */
  if (tmp == NULL || tmp[0] != '/' || strlen(tmp) > 60)
    tmp = "/tmp";
  snprintf(h->root, sizeof(h->root), "%s/hotswap-it-XXXXXX", tmp);
  if (mkdtemp(h->root) == NULL) {
    fprintf(stderr, "harness: mkdtemp %s: %s\n", h->root, strerror(errno));
    h->root[0] = '\0';
    return -1;
  }
  if (path_join(h->plugins, sizeof(h->plugins), h->root, "plugins") ||
      path_join(h->cache, sizeof(h->cache), h->root, "cache") ||
      path_join(h->control, sizeof(h->control), h->root, "ctl.sock") ||
      path_join(h->log, sizeof(h->log), h->root, "host.log") ||
      mkdir(h->plugins, 0755) != 0 || mkdir(h->cache, 0700) != 0) {
    fprintf(stderr, "harness: cannot prepare %s: %s\n", h->root,
            strerror(errno));
    harness_close(h);
    return -1;
  }
  int fd = open(h->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    harness_close(h);
    return -1;
  }
  close(fd);
  return 0;
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

void harness_close(harness *h) {
  for (int i = 0; i < HARNESS_CLIENTS_MAX; i++) {
    if (h->clients[i] > 0) {
      int st;
      kill(-h->clients[i], SIGKILL);
      waitpid(h->clients[i], &st, 0);
      h->clients[i] = 0;
    }
  }
  if (h->pid > 0) {
    int st;
    kill(-h->pgid, SIGKILL);
    kill(h->pid, SIGKILL);
    waitpid(h->pid, &st, 0);
    h->pid = 0;
  }
  h->pgid = 0; /* reaped: the id may be reused, never signal it again */
  if (h->root[0] != '\0')
    nftw(h->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  h->root[0] = '\0';
}

int harness_setup(void **state) {
  harness *h = malloc(sizeof(*h));
  if (h == NULL || harness_init(h) != 0) {
    free(h);
    return -1;
  }
  *state = h;
  return 0;
}

int harness_teardown(void **state) {
  harness *h = *state;
  if (h != NULL) {
    harness_close(h);
    free(h);
  }
  *state = NULL;
  return 0;
}

int harness_env(harness *h, const char *assignment) {
  if (h->nenv >= HARNESS_ENV_MAX || !strchr(assignment, '=') ||
      strlen(assignment) >= sizeof(h->env[0]))
    return -1;
  snprintf(h->env[h->nenv++], sizeof(h->env[0]), "%s", assignment);
  return 0;
}

/* ---- processes --------------------------------------------------------- */

/* environ with h->env replacing or adding variables; into envp (cap
 * entries). Returns 0, or -1 when it does not fit. */
static int build_env(const harness *h, char **envp, size_t cap) {
  size_t n = 0;
  for (char **e = environ; *e != NULL; e++) {
    int replaced = 0;
    for (int i = 0; i < h->nenv; i++) {
      size_t len = (size_t)(strchr(h->env[i], '=') - h->env[i]) + 1;
      if (strncmp(*e, h->env[i], len) == 0)
        replaced = 1;
    }
    if (replaced)
      continue;
    if (n + 1 >= cap)
      return -1;
    envp[n++] = *e;
  }
  for (int i = 0; i < h->nenv; i++) {
    if (n + 1 >= cap)
      return -1;
    envp[n++] = (char *)h->env[i];
  }
  envp[n] = NULL;
  return 0;
}

/*
 * Forks and execs argv[0] with argv and envp in a new process group,
 * stdin from /dev/null, stdout to out_fd and stderr to err_fd. The child
 * dies with the test (PR_SET_PDEATHSIG). Returns the pid or -1.
 */
static pid_t spawn(char **argv, char **envp, int out_fd, int err_fd) {
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "harness: fork: %s\n", strerror(errno));
    return -1;
  }
  if (pid == 0) {
    /* Only async-signal-safe calls from here on. */
    int null = open("/dev/null", O_RDONLY);
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out_fd, 1) < 0 ||
        dup2(err_fd, 2) < 0)
      _exit(126);
    if (null > 2)
      close(null);
    execve(argv[0], argv, envp);
    _exit(127);
  }
  setpgid(pid, pid); /* also here: no race with a kill of the group */
  return pid;
}

int harness_start(harness *h, const char *const *args) {
  char *argv[ARGV_MAX];
  char *envp[1024];
  const char *started = "hotswap started:";
  size_t n = 0;
  int fd;

  if (h->pid > 0) {
    fprintf(stderr, "harness: a host is already running (pid %d)\n",
            (int)h->pid);
    return -1;
  }
  argv[n++] = h->bin[0] ? h->bin : (char *)HS_TEST_BIN;
  argv[n++] = (char *)"--control";
  argv[n++] = h->control;
  argv[n++] = (char *)"--cache-dir";
  argv[n++] = h->cache;
  argv[n++] = (char *)"--settle";
  argv[n++] = (char *)"30";
  argv[n++] = (char *)"--sandbox-timeout";
  argv[n++] = (char *)"20000"; /* HARNESS_TIMEOUT_MS: see harness.h */
  for (size_t i = 0; args != NULL && args[i] != NULL; i++) {
    if (n + 2 >= ARGV_MAX)
      return -1;
    argv[n++] = (char *)args[i];
    if (i > 0 && strcmp(args[i - 1], "--log-format") == 0 &&
        strcmp(args[i], "json") == 0)
      started = "\"plugin\":\"hotswap\",\"event\":\"started\"";
  }
  argv[n++] = h->plugins;
  argv[n] = NULL;
  if (build_env(h, envp, sizeof(envp) / sizeof(envp[0])) != 0)
    return -1;

  fd = open(h->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    fprintf(stderr, "harness: open %s: %s\n", h->log, strerror(errno));
    return -1;
  }
  h->offset = harness_log_end(h);
  h->exited = 0;
  h->pid = spawn(argv, envp, fd, fd);
  close(fd);
  if (h->pid < 0) {
    h->pid = 0;
    return -1;
  }
  h->pgid = h->pid;
  if (harness_wait(h, started, NULL, 0) < 0) {
    fprintf(stderr, "harness: the host did not start\n");
    if (h->pid > 0) {
      int st;
      kill(-h->pgid, SIGKILL);
      waitpid(h->pid, &st, 0);
      h->pid = 0;
    }
    return -1;
  }
  return 0;
}

int harness_stop(harness *h) {
  int st;
  if (h->pid <= 0) {
    if (h->exited)
      fprintf(stderr, "harness: the host had already exited (status %d)\n",
              decode(h->wstatus));
    else
      fprintf(stderr, "harness: no host is running\n");
    return -1;
  }
  kill(h->pid, SIGTERM);
  if (!wait_exit(h->pid, &st, HARNESS_TIMEOUT_MS)) {
    fprintf(stderr, "harness: the host (pid %d) ignored SIGTERM for %d ms\n",
            (int)h->pid, HARNESS_TIMEOUT_MS);
    kill(-h->pgid, SIGKILL);
    waitpid(h->pid, &st, 0);
    h->pid = 0;
    return -1;
  }
  h->pid = 0;
  return decode(st);
}

/* Reads up to size - 1 bytes of path into buf, NUL-terminated. */
static void slurp(const char *path, char *buf, size_t size) {
  if (buf == NULL || size == 0)
    return;
  buf[0] = '\0';
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  size_t len = 0;
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
}

int harness_run_start(harness *h, const char *const *args, harness_proc *p) {
  char *argv[ARGV_MAX];
  char *envp[1024];
  size_t n = 0;
  int ofd, efd, slot;

  memset(p, 0, sizeof(*p));
  for (slot = 0; slot < HARNESS_CLIENTS_MAX && h->clients[slot] > 0; slot++) {
  }
  if (slot == HARNESS_CLIENTS_MAX) {
    fprintf(stderr, "harness: too many clients at once\n");
    return -1;
  }
  argv[n++] = (char *)HS_TEST_BIN;
  for (size_t i = 0; args[i] != NULL; i++) {
    if (n + 1 >= ARGV_MAX)
      return -1;
    argv[n++] = (char *)args[i];
  }
  argv[n] = NULL;
  h->nruns++;
  if (build_env(h, envp, sizeof(envp) / sizeof(envp[0])) != 0 ||
      snprintf(p->out, sizeof(p->out), "%s/run%d.out", h->root, h->nruns) >=
          (int)sizeof(p->out) ||
      snprintf(p->err, sizeof(p->err), "%s/run%d.err", h->root, h->nruns) >=
          (int)sizeof(p->err))
    return -1;
  ofd = open(p->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  efd = open(p->err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (ofd < 0 || efd < 0) {
    if (ofd >= 0)
      close(ofd);
    if (efd >= 0)
      close(efd);
    return -1;
  }
  p->pid = spawn(argv, envp, ofd, efd);
  close(ofd);
  close(efd);
  if (p->pid < 0) {
    p->pid = 0;
    return -1;
  }
  h->clients[slot] = p->pid;
  return 0;
}

int harness_run_wait(harness *h, harness_proc *p, char *out, size_t outsz,
                     char *err, size_t errsz) {
  int st, rc;

  if (out != NULL && outsz > 0)
    out[0] = '\0';
  if (err != NULL && errsz > 0)
    err[0] = '\0';
  if (p->pid <= 0)
    return -1;
  if (p->exited) {
    st = p->wstatus;
    rc = decode(st);
  } else if (!wait_exit(p->pid, &st, HARNESS_TIMEOUT_MS)) {
    fprintf(stderr, "harness: client %d did not exit within %d ms\n",
            (int)p->pid, HARNESS_TIMEOUT_MS);
    kill(-p->pid, SIGKILL);
    waitpid(p->pid, &st, 0);
    rc = -1;
  } else {
    rc = decode(st);
  }
  for (int i = 0; i < HARNESS_CLIENTS_MAX; i++)
    if (h->clients[i] == p->pid)
      h->clients[i] = 0;
  p->pid = 0;
  slurp(p->out, out, outsz);
  slurp(p->err, err, errsz);
  unlink(p->out);
  unlink(p->err);
  return rc;
}

int harness_run_done(harness *h, harness_proc *p) {
  if (p->pid <= 0 || p->exited)
    return 1;
  if (waitpid(p->pid, &p->wstatus, WNOHANG) != p->pid)
    return 0;
  p->exited = 1;
  for (int i = 0; i < HARNESS_CLIENTS_MAX; i++)
    if (h->clients[i] == p->pid)
      h->clients[i] = 0; /* reaped: never signal its id again */
  return 1;
}

int harness_run(harness *h, const char *const *args, char *out, size_t outsz,
                char *err, size_t errsz) {
  harness_proc p;
  if (harness_run_start(h, args, &p) != 0)
    return -1;
  return harness_run_wait(h, &p, out, outsz, err, errsz);
}

int harness_signal(harness *h, int sig) {
  if (h->pid <= 0) {
    fprintf(stderr, "harness: no host is running\n");
    return -1;
  }
  return kill(h->pid, sig) == 0 ? 0 : -1;
}

int harness_kill(harness *h) {
  int st;
  if (h->pid <= 0) {
    fprintf(stderr, "harness: no host is running\n");
    return -1;
  }
  kill(-h->pgid, SIGKILL);
  waitpid(h->pid, &st, 0);
  h->pid = 0;
  return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? 0 : -1;
}

/* ---- the log ----------------------------------------------------------- */

/* Prints the log from offset from (its last 6000 bytes at most). */
static void dump_log(const harness *h, long from) {
  char buf[6001];
  int fd = open(h->log, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    if (fd >= 0)
      close(fd);
    return;
  }
  if (st.st_size - from > 6000)
    from = (long)st.st_size - 6000;
  ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
  close(fd);
  buf[n > 0 ? n : 0] = '\0';
  fprintf(stderr, "---- host log from offset %ld ----\n%s---- end ----\n",
          from, buf);
}

/*
 * Scans the complete lines of the log from *pos on for needle. Returns the
 * offset of the first matching line (its text copied into line) with *pos
 * just past it, or -1 with *pos past the last complete line looked at.
 */
static long scan(int fd, long *pos, const char *needle, char *buf,
                 char *line, size_t size) {
  for (;;) {
    ssize_t n = pread(fd, buf, SCAN_BUF - 1, *pos);
    if (n <= 0)
      return -1;
    size_t start = 0;
    for (size_t i = 0; i < (size_t)n; i++) {
      if (buf[i] != '\n')
        continue;
      buf[i] = '\0';
      if (strstr(buf + start, needle) != NULL) {
        long at = *pos + (long)start;
        if (line != NULL && size > 0)
          snprintf(line, size, "%s", buf + start);
        *pos += (long)i + 1;
        return at;
      }
      start = i + 1;
    }
    if (start == 0) {
      if ((size_t)n < SCAN_BUF - 1)
        return -1;    /* an incomplete last line */
      start = (size_t)n; /* a line longer than the buffer: skip it */
    }
    *pos += (long)start;
    if ((size_t)n < SCAN_BUF - 1)
      return -1;
  }
}

long harness_wait(harness *h, const char *needle, char *line, size_t size) {
  uint64_t deadline = now_ms() + HARNESS_TIMEOUT_MS;
  long pos = h->offset, at = -1;
  char *buf = malloc(SCAN_BUF);
  int fd = open(h->log, O_RDONLY | O_CLOEXEC);
  const char *why = "timed out";

  if (buf == NULL || fd < 0) {
    free(buf);
    if (fd >= 0)
      close(fd);
    return -1;
  }
  for (;;) {
    /* Liveness first: lines written before the host's end are still seen
     * by the scan that follows. */
    int running = h->pid > 0 && !host_reaped(h);
    at = scan(fd, &pos, needle, buf, line, size);
    if (at >= 0)
      break;
    if (!running) {
      why = h->exited ? "the host exited" : "no host is running";
      break;
    }
    if (now_ms() >= deadline)
      break;
    sleep_ms(POLL_MS);
  }
  close(fd);
  free(buf);
  if (at >= 0) {
    h->offset = pos;
    return at;
  }
  if (h->exited)
    fprintf(stderr, "harness: waiting for \"%s\": %s (status %d)\n", needle,
            why, decode(h->wstatus));
  else if (h->pid > 0)
    fprintf(stderr, "harness: waiting for \"%s\": %s after %d ms\n", needle,
            why, HARNESS_TIMEOUT_MS);
  else
    fprintf(stderr, "harness: waiting for \"%s\": %s\n", needle, why);
  dump_log(h, h->offset);
  return -1;
}

int harness_count(const harness *h, long from, long to, const char *needle) {
  char *buf = malloc(SCAN_BUF);
  int fd = open(h->log, O_RDONLY | O_CLOEXEC);
  long pos = from, at;
  int count = 0;

  if (buf == NULL || fd < 0) {
    free(buf);
    if (fd >= 0)
      close(fd);
    return -1;
  }
  while ((at = scan(fd, &pos, needle, buf, NULL, 0)) >= 0 &&
         (to < 0 || at < to))
    count++;
  close(fd);
  free(buf);
  return count;
}

long harness_log_end(const harness *h) {
  char *buf = malloc(SCAN_BUF);
  int fd = open(h->log, O_RDONLY | O_CLOEXEC);
  long pos = 0;
  if (buf != NULL && fd >= 0)
    scan(fd, &pos, "\n", buf, NULL, 0); /* no line contains '\n': the end */
  if (fd >= 0)
    close(fd);
  free(buf);
  return pos;
}

int harness_contains(const char *hay, const char *needle) {
  if (hay != NULL && strstr(hay, needle) != NULL)
    return 1;
  fprintf(stderr, "harness: expected \"%s\"\n          in \"%s\"\n", needle,
          hay ? hay : "(null)");
  return 0;
}

int harness_lacks(const char *hay, const char *needle) {
  if (hay == NULL || strstr(hay, needle) == NULL)
    return 1;
  fprintf(stderr, "harness: did not expect \"%s\"\n          in \"%s\"\n",
          needle, hay);
  return 0;
}

/* ---- the plugin directory ---------------------------------------------- */

static int fixture_path(char *out, size_t size, const char *fixture) {
  int n = snprintf(out, size, "%s/%s.so", HS_TEST_FIXTURES, fixture);
  return n < 0 || (size_t)n >= size ? -1 : 0;
}

long harness_fixture_size(const char *fixture) {
  char path[PATH_MAX];
  struct stat st;
  if (fixture_path(path, sizeof(path), fixture) != 0 || stat(path, &st) != 0)
    return -1;
  return (long)st.st_size;
}

/* Reads a whole fixture; *len its size. The caller frees. */
static char *read_fixture(const char *fixture, size_t *len) {
  char path[PATH_MAX];
  long size = harness_fixture_size(fixture);
  if (size < 0 || fixture_path(path, sizeof(path), fixture) != 0) {
    fprintf(stderr, "harness: no fixture %s in %s\n", fixture,
            HS_TEST_FIXTURES);
    return NULL;
  }
  char *data = malloc((size_t)size + 1);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  size_t done = 0;
  while (data != NULL && fd >= 0 && done < (size_t)size) {
    ssize_t n = read(fd, data + done, (size_t)size - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    done += (size_t)n;
  }
  if (fd >= 0)
    close(fd);
  if (data == NULL || done != (size_t)size) {
    free(data);
    return NULL;
  }
  *len = done;
  return data;
}

static int write_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Writes data as plugins/name the way how says. */
static int put_file(harness *h, const char *data, size_t len,
                    const char *name, harness_how how,
                    const struct timespec *mtime) {
  char target[PATH_MAX], tmp[PATH_MAX], hidden[NAME_MAX + 1];
  const char *path = target;
  int flags, fd, rc = 0;

  if (path_join(target, sizeof(target), h->plugins, name) != 0)
    return -1;
  switch (how) {
  case HARNESS_RENAME:
    /* A hidden name: the host ignores it until the rename. */
    snprintf(hidden, sizeof(hidden), ".%s.harness-tmp", name);
    if (path_join(tmp, sizeof(tmp), h->plugins, hidden) != 0)
      return -1;
    path = tmp;
    flags = O_WRONLY | O_CREAT | O_TRUNC;
    break;
  case HARNESS_COPY_OVER:
    flags = O_WRONLY | O_TRUNC; /* it must exist: in place, like cp */
    break;
  case HARNESS_WRITE_NEW:
    flags = O_WRONLY | O_CREAT | O_EXCL;
    break;
  default:
    return -1;
  }
  fd = open(path, flags | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "harness: open %s: %s\n", path, strerror(errno));
    return -1;
  }
  if (write_all(fd, data, len) != 0)
    rc = -1;
  if (rc == 0 && mtime != NULL) {
    struct timespec times[2] = {*mtime, *mtime};
    rc = futimens(fd, times);
  }
  if (close(fd) != 0)
    rc = -1;
  if (rc == 0 && how == HARNESS_RENAME && rename(tmp, target) != 0)
    rc = -1;
  if (rc != 0)
    fprintf(stderr, "harness: cannot write %s: %s\n", target,
            strerror(errno));
  return rc;
}

int harness_install(harness *h, const char *fixture, const char *name,
                    harness_how how, const struct timespec *mtime) {
  size_t len;
  char *data = read_fixture(fixture, &len);
  if (data == NULL)
    return -1;
  int rc = put_file(h, data, len, name, how, mtime);
  free(data);
  return rc;
}

int harness_install_head(harness *h, const char *fixture, size_t len,
                         const char *name, harness_how how) {
  size_t full;
  char *data = read_fixture(fixture, &full);
  if (data == NULL)
    return -1;
  int rc = len <= full ? put_file(h, data, len, name, how, NULL) : -1;
  free(data);
  return rc;
}

int harness_install_text(harness *h, const char *text, const char *name,
                         harness_how how) {
  return put_file(h, text, strlen(text), name, how, NULL);
}

int harness_touch(harness *h, const char *name, const struct timespec *mtime) {
  char path[PATH_MAX];
  struct timespec times[2];
  if (path_join(path, sizeof(path), h->plugins, name) != 0)
    return -1;
  if (mtime != NULL) {
    times[0] = *mtime;
    times[1] = *mtime;
  }
  return utimensat(AT_FDCWD, path, mtime ? times : NULL, 0) == 0 ? 0 : -1;
}

int harness_mtime(harness *h, const char *name, struct timespec *mtime) {
  char path[PATH_MAX];
  struct stat st;
  if (path_join(path, sizeof(path), h->plugins, name) != 0 ||
      stat(path, &st) != 0)
    return -1;
  *mtime = st.st_mtim;
  return 0;
}

int harness_move(harness *h, const char *from, const char *to) {
  char a[PATH_MAX], b[PATH_MAX];
  if (path_join(a, sizeof(a), h->plugins, from) != 0 ||
      path_join(b, sizeof(b), h->plugins, to) != 0)
    return -1;
  return rename(a, b) == 0 ? 0 : -1;
}

int harness_remove(harness *h, const char *name) {
  char path[PATH_MAX];
  if (path_join(path, sizeof(path), h->plugins, name) != 0)
    return -1;
  return unlink(path) == 0 ? 0 : -1;
}

/* ---- status ------------------------------------------------------------ */

int harness_status(harness *h, char *json, size_t size) {
  const char *argv[] = {"status", "--json", "--control", h->control, NULL};
  char err[1024];
  int rc = harness_run(h, argv, json, size, err, sizeof(err));
  if (rc != 0)
    fprintf(stderr, "harness: status exited %d: %s\n", rc, err);
  return rc;
}

/* The end of the JSON value starting at p (a string, object, array or
 * scalar); NULL if it does not end. */
static const char *value_end(const char *p) {
  if (*p == '"') {
    for (p++; *p != '\0'; p++) {
      if (*p == '\\' && p[1] != '\0')
        p++;
      else if (*p == '"')
        return p + 1;
    }
    return NULL;
  }
  if (*p == '{' || *p == '[') {
    int depth = 0;
    for (; *p != '\0'; p++) {
      if (*p == '"') {
        p = value_end(p);
        if (p == NULL)
          return NULL;
        p--;
      } else if (*p == '{' || *p == '[') {
        depth++;
      } else if (*p == '}' || *p == ']') {
        if (--depth == 0)
          return p + 1;
      }
    }
    return NULL;
  }
  while (*p != '\0' && *p != ',' && *p != '}' && *p != ']')
    p++;
  return p;
}

/* The value of "key": inside [start, end), or NULL. */
static const char *find_key(const char *start, const char *end,
                            const char *key, size_t keylen) {
  char pat[96];
  if (keylen + 4 > sizeof(pat))
    return NULL;
  snprintf(pat, sizeof(pat), "\"%.*s\":", (int)keylen, key);
  for (const char *p = start; (p = strstr(p, pat)) != NULL && p < end;
       p++) {
    const char *v = p + strlen(pat);
    if (v < end)
      return v;
  }
  return NULL;
}

int harness_json_get(const char *json, const char *plugin, const char *key,
                     char *out, size_t size) {
  const char *start, *end, *dot, *v, *ve;
  char pat[160];

  if (json == NULL || size == 0)
    return -1;
  if (plugin == NULL) {
    start = strstr(json, "\"host\":{");
    end = start ? strstr(start, "\"plugins\":") : NULL;
  } else {
    snprintf(pat, sizeof(pat), "{\"name\":\"%s\"", plugin);
    start = strstr(json, pat);
    if (start != NULL) {
      v = strchr(start, '{');
      end = v ? value_end(v) : NULL;
    } else {
      end = NULL;
    }
  }
  if (start == NULL || end == NULL)
    return -1;
  /* One level of nesting: "last_error.stage". */
  dot = strchr(key, '.');
  if (dot != NULL) {
    v = find_key(start, end, key, (size_t)(dot - key));
    if (v == NULL || *v != '{' || (ve = value_end(v)) == NULL)
      return -1;
    start = v;
    end = ve;
    key = dot + 1;
  }
  v = find_key(start, end, key, strlen(key));
  if (v == NULL || (ve = value_end(v)) == NULL || ve > end)
    return -1;
  size_t n = 0;
  if (*v == '"') {
    for (const char *p = v + 1; p < ve - 1 && n + 1 < size; p++) {
      if (*p == '\\') {
        p++;
        out[n++] = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
        if (*p == 'u')
          p += 4; /* \uXXXX: kept as 'u', enough for the tests */
      } else {
        out[n++] = *p;
      }
    }
  } else {
    for (const char *p = v; p < ve && n + 1 < size; p++)
      out[n++] = *p;
  }
  out[n] = '\0';
  return 0;
}

int harness_json_long(const char *json, const char *plugin, const char *key,
                      long *out) {
  char text[64], *end;
  if (harness_json_get(json, plugin, key, text, sizeof(text)) != 0 ||
      text[0] == '\0')
    return -1;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno != 0 || (*end != '\0' && *end != '.'))
    return -1;
  *out = v;
  return 0;
}

int harness_status_get(harness *h, const char *plugin, const char *key,
                       char *out, size_t size) {
  char json[65536];
  if (harness_status(h, json, sizeof(json)) != 0)
    return -1;
  if (harness_json_get(json, plugin, key, out, size) != 0) {
    fprintf(stderr, "harness: no %s.%s in the status: %s\n",
            plugin ? plugin : "host", key, json);
    return -1;
  }
  return 0;
}

int harness_status_long(harness *h, const char *plugin, const char *key,
                        long *out) {
  char json[65536];
  if (harness_status(h, json, sizeof(json)) != 0)
    return -1;
  if (harness_json_long(json, plugin, key, out) != 0) {
    fprintf(stderr, "harness: no number %s.%s in the status: %s\n",
            plugin ? plugin : "host", key, json);
    return -1;
  }
  return 0;
}

int harness_wait_status(harness *h, const char *plugin, const char *key,
                        const char *want) {
  uint64_t deadline = now_ms() + HARNESS_TIMEOUT_MS;
  char json[65536], got[1024] = "";
  for (;;) {
    if (harness_status(h, json, sizeof(json)) == 0 &&
        harness_json_get(json, plugin, key, got, sizeof(got)) == 0 &&
        strcmp(got, want) == 0)
      return 0;
    if (now_ms() >= deadline) {
      fprintf(stderr, "harness: %s.%s is \"%s\", not \"%s\", after %d ms\n",
              plugin ? plugin : "host", key, got, want, HARNESS_TIMEOUT_MS);
      return -1;
    }
    sleep_ms(10);
  }
}

/* ---- resources of a process -------------------------------------------- */

/* Entries of dir, without "." and ".."; only names starting with prefix
 * when prefix is not NULL. -1 if dir cannot be read. */
static int count_entries(const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;
  if (d == NULL)
    return -1;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    if (prefix == NULL || strncmp(e->d_name, prefix, strlen(prefix)) == 0)
      n++;
  }
  closedir(d);
  return n;
}

int harness_fd_count(pid_t pid) { return proc_fd_count(pid); }

int harness_fd_target(pid_t pid, int fd, char *out, size_t size) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
  ssize_t n = size ? readlink(path, out, size - 1) : -1;
  if (n < 0)
    return -1;
  out[n] = '\0';
  return 0;
}

int harness_holds(pid_t pid, const char *target) {
  int n = proc_fd_count_to(pid, target);
  return n < 0 ? -1 : n > 0;
}

int harness_fd_count_settled(const harness *h) {
  uint64_t deadline = now_ms() + HARNESS_TIMEOUT_MS;
  int pidfds;
  while ((pidfds = proc_fd_count_to(h->pid, "anon_inode:[pidfd]")) != 1) {
    if (pidfds < 0 || now_ms() >= deadline) {
      fprintf(stderr, "harness: the host holds %d pidfds, not 1 (its "
              "spare validator's), after %d ms\n", pidfds,
              HARNESS_TIMEOUT_MS);
      return -1;
    }
    sleep_ms(POLL_MS);
  }
  return proc_fd_count(h->pid);
}

int harness_maps_count(pid_t pid) { return proc_maps_count(pid); }

int harness_cache_files(const harness *h) {
  DIR *d = opendir(h->cache);
  struct dirent *e;
  char sub[PATH_MAX];
  int total = 0;
  if (d == NULL)
    return -1;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, "hotswap-", 8) != 0)
      continue;
    int n = path_join(sub, sizeof(sub), h->cache, e->d_name) == 0
                ? count_entries(sub, NULL)
                : -1;
    if (n < 0) {
      total = -1;
      break;
    }
    total += n;
  }
  closedir(d);
  return total;
}

int harness_wait_cache_files(const harness *h, int n) {
  uint64_t deadline = now_ms() + HARNESS_TIMEOUT_MS;
  int got;
  while ((got = harness_cache_files(h)) != n) {
    if (now_ms() >= deadline) {
      fprintf(stderr, "harness: %d files in the cache, not %d, after %d ms\n",
              got, n, HARNESS_TIMEOUT_MS);
      return -1;
    }
    sleep_ms(POLL_MS);
  }
  return 0;
}

int harness_cache_dirs(const harness *h) {
  return count_entries(h->cache, "hotswap-");
}

int harness_exec(const char *const argv[], const char *const env[],
                 const char *log, int timeout_s) {
  struct timespec tick = {0, 10 * 1000 * 1000};
  long waited_ms = 0;
  int st;
  pid_t pid = fork();

  if (pid < 0)
    return -1;
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    setpgid(0, 0);
    if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
      _exit(126);
    for (size_t i = 0; env != NULL && env[i] != NULL; i++)
      putenv((char *)env[i]);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  setpgid(pid, pid);
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (r < 0 && errno != EINTR)
      return -1;
    if (waited_ms >= (long)timeout_s * 1000) {
      kill(-pid, SIGKILL);
      waitpid(pid, &st, 0);
      fprintf(stderr, "%s ran longer than %d s: killed\n", argv[0],
              timeout_s);
      return -1;
    }
    nanosleep(&tick, NULL);
    waited_ms += 10;
  }
}

/* ---- assertions (cmocka) ---------------------------------------------- */

long harness_expect_line(harness *h, const char *needle) {
  long at = harness_wait(h, needle, NULL, 0);
  assert_true(at >= 0);
  return at;
}

void harness_expect_status(harness *h, const char *plugin, const char *key,
                           const char *want) {
  char got[1024];
  assert_int_equal(harness_status_get(h, plugin, key, got, sizeof(got)), 0);
  assert_string_equal(got, want);
}

void harness_expect_status_num(harness *h, const char *plugin,
                               const char *key, long want) {
  long got = -1;
  assert_int_equal(harness_status_long(h, plugin, key, &got), 0);
  assert_int_equal(got, want);
}
