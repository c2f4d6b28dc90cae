/*
 * zygote.c - the validator zygote: a small process of the host's own image,
 * spawned once, that keeps one forked spare validator waiting so that a
 * validation costs a message, not a process start (posix_spawn blocks the
 * host ~3.5 ms and the new image needs ~15 ms to reach main on these
 * machines; a fork of this small process ~1 ms, done ahead of time).
 *
 * Host -> zygote (fd 3, SOCK_SEQPACKET): one message per validation, the
 * validator's argv joined by NULs, with two fds: the state memfd and the
 * write end of the report pipe. The zygote passes it to its spare, forks
 * the next spare, and reports every child it reaps as "exit PID STATUS".
 * It exits when the host's end closes, and dies with the host.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "sandbox.h"

#define HOST_FD 3
#define MAX_ARGS 32

typedef struct spare {
  pid_t pid; /* 0 when there is none */
  int fd;    /* our end of its request socket */
} spare;

/* Receives one request: payload into buf, up to two fds into fds. Returns
 * the payload size, 0 at end of file, -1 on error. */
static ssize_t recv_req(int fd, char *buf, size_t cap, int fds[2]) {
  union {
    char raw[CMSG_SPACE(2 * sizeof(int))];
    struct cmsghdr align;
  } ctl;
  struct iovec iov = {buf, cap};
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl.raw;
  msg.msg_controllen = sizeof(ctl.raw);
  fds[0] = fds[1] = -1;
  ssize_t n;
  do
    n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      memcpy(fds, CMSG_DATA(c), (nfd < 2 ? nfd : 2) * sizeof(int));
    }
  return n;
}

/* Sends a request with its two fds. Returns 0 or -1. */
int hs_zygote_send(int fd, const char *buf, size_t len, const int fds[2]) {
  union {
    char raw[CMSG_SPACE(2 * sizeof(int))];
    struct cmsghdr align;
  } ctl;
  struct iovec iov = {(void *)buf, len};
  struct msghdr msg = {0};
  memset(&ctl, 0, sizeof(ctl));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl.raw;
  msg.msg_controllen = sizeof(ctl.raw);
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(2 * sizeof(int));
  memcpy(CMSG_DATA(c), fds, 2 * sizeof(int));
  ssize_t n;
  do
    n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n == (ssize_t)len ? 0 : -1;
}

/*
 * Fills the spare's page tables while it waits: a forked child would
 * otherwise take a fault on each code page it runs (fork does not copy the
 * page tables of file mappings) and a copy-on-write fault on each page it
 * writes, which costs milliseconds on virtual machines. Huge anonymous
 * regions (a sanitizer's shadow memory) are left alone.
 */
static void warm_up(void) {
  char line[512];
  FILE *f = fopen("/proc/self/maps", "re");
  if (!f)
    return;
  while (fgets(line, sizeof(line), f)) {
    unsigned long lo, hi;
    char perms[5], path[256] = "";
    if (sscanf(line, "%lx-%lx %4s %*s %*s %*s %255s", &lo, &hi, perms,
               path) < 3)
      continue;
    size_t len = hi - lo;
    int file = path[0] == '/';
    int heap = !strcmp(path, "[heap]") || !strcmp(path, "[stack]");
    if (perms[0] != 'r' || (!file && !heap) || len > (64u << 20))
      continue;
    int advice = perms[1] == 'w' && perms[3] == 'p' ? MADV_POPULATE_WRITE
                                                    : MADV_POPULATE_READ;
    madvise((void *)lo, len, advice);
  }
  fclose(f);
  tzset(); /* the log's local time, read once here */
}

/* Kills the compile's whole process group: the supervisor's parent (the
 * zygote, which dies with the host) went away. */
static void on_parent_death(int sig) {
  (void)sig;
  kill(0, SIGKILL);
}

/* Runs the compiler: argv is {name, HS_COMPILE_ARG, cwd, cpu_s, mem_bytes,
 * cc, args...}; its output goes to the report (fd 4). This process stays
 * behind as the supervisor of its process group: if the host (so the
 * zygote) dies, it kills the compiler and everything the compiler started
 * (cc1, as, ld), which a parent-death signal on the compiler alone would
 * leave running. Exits as the compiler did. */
static void compile_exec(char **argv) {
  rlim_t cpu = (rlim_t)strtoull(argv[3], NULL, 10);
  rlim_t mem = (rlim_t)strtoull(argv[4], NULL, 10);
  struct rlimit core = {0, 0}, c = {cpu, cpu + 1}, m = {mem, mem};
  pid_t zygote = getppid();

  signal(SIGTERM, on_parent_death);
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != zygote)
    _exit(3);
  setrlimit(RLIMIT_CORE, &core);
  if (cpu > 0)
    setrlimit(RLIMIT_CPU, &c);
  if (mem > 0)
    setrlimit(RLIMIT_AS, &m); /* the compiler is never sanitized */
  if (chdir(argv[2]) != 0 || dup2(4, 1) < 0 || dup2(4, 2) < 0)
    _exit(126);
  close(3);
  close(4);
  pid_t pid = fork();
  if (pid < 0)
    _exit(126);
  if (pid == 0) {
    signal(SIGTERM, SIG_DFL);
    execvp(argv[5], argv + 5);
    fprintf(stderr, "hotswap: cannot run the compiler '%s': %s (set $CC)\n",
            argv[5], strerror(errno));
    _exit(127);
  }
  /* The report pipe stays open only in the compiler. */
  close(1);
  close(2);
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(st)) {
    signal(WTERMSIG(st), SIG_DFL);
    prctl(PR_SET_PDEATHSIG, 0);
    raise(WTERMSIG(st));
  }
  _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 126);
}

/* The spare's life: wait for one request, become its validator. */
static void spare_main(int fd, pid_t zygote) {
  static char buf[16384];
  char *argv[MAX_ARGS + 1];
  int fds[2], argc = 0;
  sigset_t none;

  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != zygote)
    _exit(3);
  warm_up();
  ssize_t n = recv_req(fd, buf, sizeof(buf) - 1, fds);
  if (n <= 0 || fds[0] < 0 || fds[1] < 0)
    _exit(0); /* the zygote is going away */
  buf[n] = '\0';
  for (char *p = buf; p < buf + n && argc < MAX_ARGS; p += strlen(p) + 1)
    argv[argc++] = p;
  argv[argc] = NULL;

  /* fd 3: the state; fd 4: the report; nothing else beyond stdio. */
  int state = fcntl(fds[0], F_DUPFD, 10), report = fcntl(fds[1], F_DUPFD, 10);
  if (state < 0 || report < 0 || dup2(state, 3) < 0 || dup2(report, 4) < 0)
    _exit(4);
  close_range(5, ~0u, 0);
  int compile = argc > 5 && strcmp(argv[1], HS_COMPILE_ARG) == 0;
  if (compile)
    setpgid(0, 0); /* a timeout kills the compiler and all it started */
  char line[32];
  int len = snprintf(line, sizeof(line), "pid %d\n", (int)getpid());
  if (write(4, line, (size_t)len) != len)
    _exit(4);
  if (compile)
    compile_exec(argv);
  _exit(hs_sandbox_child_main(argc, argv));
}

static spare fork_spare(int sigfd) {
  spare s = {0, -1};
  int sv[2];
  pid_t me = getpid();
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return s;
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    close(HOST_FD);
    close(sigfd);
    spare_main(sv[1], me);
  }
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    return s;
  }
  s.pid = pid;
  s.fd = sv[0];
  return s;
}

/* Tells the host which children ended, and how. */
static void reap(int sigfd, spare *sp) {
  struct signalfd_siginfo si;
  while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
  }
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0)
      return;
    if (pid == sp->pid) {
      close(sp->fd);
      sp->pid = 0;
      sp->fd = -1;
    }
    char msg[64];
    int n = snprintf(msg, sizeof(msg), "exit %d %d", (int)pid, status);
    if (send(HOST_FD, msg, (size_t)n, MSG_NOSIGNAL) < 0 && errno == EPIPE)
      return;
  }
}

/* Hands one request from the host to the spare, then makes a new spare. */
static void dispatch(int sigfd, spare *sp) {
  static char buf[16384];
  int fds[2];
  ssize_t n = recv_req(HOST_FD, buf, sizeof(buf), fds);
  if (n == 0 || (n < 0 && errno != EAGAIN)) {
    if (sp->pid > 0)
      kill(sp->pid, SIGKILL);
    _exit(0); /* the host closed its end */
  }
  if (n < 0)
    return;
  if (fds[0] < 0 || fds[1] < 0) {
    hs_log(HS_LOG_ERROR, NULL, "error", "zygote: a request without fds");
  } else {
    if (sp->pid == 0)
      *sp = fork_spare(sigfd);
    if (sp->pid == 0 || hs_zygote_send(sp->fd, buf, (size_t)n, fds) != 0) {
      char line[200];
      int len = snprintf(line, sizeof(line),
                         "fail sandbox %d the zygote cannot start a "
                         "validator: %s\n",
                         HS_ESANDBOX, strerror(errno));
      if (write(fds[1], line, (size_t)len) < 0) {
        /* the host gave up on it already */
      }
    } else {
      close(sp->fd);
      sp->pid = 0;
      sp->fd = -1;
    }
  }
  if (fds[0] >= 0)
    close(fds[0]);
  if (fds[1] >= 0)
    close(fds[1]);
  /* The next spare is forked once things are quiet (see the main loop):
   * forking now would compete with the validator just handed the work. */
}

int hs_zygote_main(int argc, char **argv) {
  sigset_t chld;
  if (argc != 5) {
    fprintf(stderr, "hotswap: %s is internal to hotswap\n", HS_ZYGOTE_ARG);
    return 2;
  }
  pid_t host = (pid_t)strtol(argv[2], NULL, 10);
  hs_log_init((hs_log_format)strtol(argv[3], NULL, 10),
              (hs_log_level)strtol(argv[4], NULL, 10), 2);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != host)
    _exit(3);
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0)
    _exit(5);
  spare sp = fork_spare(sigfd);
  for (;;) {
    struct pollfd p[2] = {{HOST_FD, POLLIN, 0}, {sigfd, POLLIN, 0}};
    /* Without a spare, make one after 20 ms of quiet; with one, sleep. */
    int n = poll(p, 2, sp.pid ? -1 : 20);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      _exit(6);
    }
    if (n == 0) {
      sp = fork_spare(sigfd);
      continue;
    }
    if (p[1].revents)
      reap(sigfd, &sp);
    if (p[0].revents)
      dispatch(sigfd, &sp);
  }
}
