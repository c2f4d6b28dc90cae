/*
 * zygote.c - the validator zygote: a small process of the host's own image,
 * spawned once, that keeps one forked spare validator waiting so that a
 * validation costs a message, not a process start (posix_spawn blocks the
 * host ~3.5 ms and the new image needs ~15 ms to reach main on these
 * machines; a fork of this small process ~1 ms, done ahead of time).
 *
 * The spare is the host's: the zygote forks it and sends the host its pid
 * and its end of the spare's request socket ("spare PID", one fd), so that
 * a validation goes from the host straight to the spare, with no hop
 * through the zygote on the way. The next spare is forked once the last
 * one has ended and things are quiet.
 *
 * Host -> zygote (fd 3, SOCK_SEQPACKET): a request for which the host had
 * no spare (or a compile): the validator's argv joined by NULs, with three
 * fds: the state memfd, the write end of the report pipe and that of the
 * stage pipe. The zygote forks a child for it on the spot; such a child
 * tells its pid on the report pipe first ("pid PID"). The zygote reports
 * every child it reaps as "exit PID STATUS". It exits when the host's end
 * closes, and dies with the host.
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

/* Receives one message: payload into buf, up to nfds fds into fds (-1 for
 * those missing). Returns the payload size, 0 at end of file, -1 on error
 * (EINTR retried). */
ssize_t hs_zygote_recv(int fd, char *buf, size_t cap, int *fds, int nfds,
                       int flags) {
  union {
    char raw[CMSG_SPACE(HS_ZYGOTE_FDS * sizeof(int))];
    struct cmsghdr align;
  } ctl;
  struct iovec iov = {buf, cap};
  struct msghdr msg = {0};
  if (nfds < 0 || nfds > HS_ZYGOTE_FDS) {
    errno = EINVAL;
    return -1;
  }
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl.raw;
  msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
  for (int i = 0; i < nfds; i++)
    fds[i] = -1;
  ssize_t n;
  do
    n = recvmsg(fd, &msg, flags | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  for (struct cmsghdr *c = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL; c;
       c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t got = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      memcpy(fds, CMSG_DATA(c),
             (got < (size_t)nfds ? got : (size_t)nfds) * sizeof(int));
    }
  return n;
}

/* Receives a request with its HS_ZYGOTE_FDS fds. */
static ssize_t recv_req(int fd, char *buf, size_t cap,
                        int fds[HS_ZYGOTE_FDS]) {
  return hs_zygote_recv(fd, buf, cap, fds, HS_ZYGOTE_FDS, 0);
}

/* Sends a message with nfds fds. Returns 0 or -1. */
int hs_zygote_send(int fd, const char *buf, size_t len, const int *fds,
                   int nfds) {
  union {
    char raw[CMSG_SPACE(HS_ZYGOTE_FDS * sizeof(int))];
    struct cmsghdr align;
  } ctl;
  struct iovec iov = {(void *)buf, len};
  struct msghdr msg = {0};
  memset(&ctl, 0, sizeof(ctl));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds < 1 || nfds > HS_ZYGOTE_FDS) {
    errno = EINVAL;
    return -1;
  }
  msg.msg_control = ctl.raw;
  msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
  memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
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
  close_range(3, 5, 0); /* the state, the report (now 1 and 2), stages */
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

/* The spare's life: wait for one request, become its validator (or a
 * compile's supervisor). One forked for a request the zygote got (announce)
 * tells its pid first: the host knows the pids of the spares it holds. */
static void spare_main(int fd, pid_t zygote, int announce) {
  static char buf[16384];
  char *argv[MAX_ARGS + 1];
  int fds[HS_ZYGOTE_FDS], argc = 0;
  sigset_t none;

  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != zygote)
    _exit(3);
  if (!announce)
    warm_up(); /* it waits: there is time */
  ssize_t n = recv_req(fd, buf, sizeof(buf) - 1, fds);
  if (n <= 0 || fds[0] < 0 || fds[1] < 0 || fds[2] < 0)
    _exit(0); /* the zygote or the host is going away */
  buf[n] = '\0';
  for (char *p = buf; p < buf + n && argc < MAX_ARGS; p += strlen(p) + 1)
    argv[argc++] = p;
  argv[argc] = NULL;

  /* fd 3: the state; fd 4: the report; fd 5: the stages; nothing else
   * beyond stdio. */
  int moved[HS_ZYGOTE_FDS];
  for (int i = 0; i < HS_ZYGOTE_FDS; i++)
    if ((moved[i] = fcntl(fds[i], F_DUPFD, 10)) < 0)
      _exit(4);
  for (int i = 0; i < HS_ZYGOTE_FDS; i++)
    if (dup2(moved[i], 3 + i) < 0)
      _exit(4);
  close_range(3 + HS_ZYGOTE_FDS, ~0u, 0);
  int compile = argc > 5 && strcmp(argv[1], HS_COMPILE_ARG) == 0;
  if (compile)
    setpgid(0, 0); /* a timeout kills the compiler and all it started */
  if (announce) {
    char line[32];
    int len = snprintf(line, sizeof(line), "pid %d\n", (int)getpid());
    if (write(4, line, (size_t)len) != len)
      _exit(4);
  }
  if (compile)
    compile_exec(argv);
  _exit(hs_sandbox_child_main(argc, argv));
}

/* Forks a child waiting for one request on the returned socket (its pid in
 * *pid), or returns -1. */
static int fork_spare(int sigfd, int announce, pid_t *pid) {
  int sv[2];
  pid_t me = getpid();
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return -1;
  *pid = fork();
  if (*pid == 0) {
    close(sv[0]);
    close(HOST_FD);
    close(sigfd);
    spare_main(sv[1], me, announce);
  }
  close(sv[1]);
  if (*pid < 0) {
    close(sv[0]);
    return -1;
  }
  return sv[0];
}

/* Forks the host's next spare and hands it over ("spare PID" and its
 * socket). Returns its pid, or 0 if there is none (tried again later). */
static pid_t give_spare(int sigfd) {
  pid_t pid;
  int fd = fork_spare(sigfd, 0, &pid);
  if (fd < 0)
    return 0;
  char msg[32];
  int n = snprintf(msg, sizeof(msg), "spare %d", (int)pid);
  int rc = hs_zygote_send(HOST_FD, msg, (size_t)n, &fd, 1);
  close(fd); /* the host has it now; without it the spare sees the end */
  if (rc != 0) {
    kill(pid, SIGKILL);
    return 0;
  }
  return pid;
}

/* Tells the host which children ended, and how; returns 1 if the host's
 * spare (given) was one of them. */
static int reap(int sigfd, pid_t given) {
  struct signalfd_siginfo si;
  int gone = 0;
  while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
  }
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0)
      return gone;
    if (pid == given)
      gone = 1;
    char msg[64];
    int n = snprintf(msg, sizeof(msg), "exit %d %d", (int)pid, status);
    if (send(HOST_FD, msg, (size_t)n, MSG_NOSIGNAL) < 0 && errno == EPIPE)
      return gone;
  }
}

/* A request the host sent here (it had no spare at hand, or a compile):
 * a child forked for it on the spot. */
static void dispatch(int sigfd) {
  static char buf[16384];
  int fds[HS_ZYGOTE_FDS];
  ssize_t n = recv_req(HOST_FD, buf, sizeof(buf), fds);
  if (n == 0 || (n < 0 && errno != EAGAIN))
    _exit(0); /* the host closed its end; the children die with us */
  if (n < 0)
    return;
  if (fds[0] < 0 || fds[1] < 0 || fds[2] < 0) {
    hs_log(HS_LOG_ERROR, NULL, "error", "zygote: a request without fds");
  } else {
    pid_t pid;
    int fd = fork_spare(sigfd, 1, &pid);
    if (fd < 0 || hs_zygote_send(fd, buf, (size_t)n, fds, HS_ZYGOTE_FDS)) {
      char line[200];
      int len = snprintf(line, sizeof(line),
                         "fail sandbox %d the zygote cannot start a "
                         "validator: %s\n",
                         HS_ESANDBOX, strerror(errno));
      if (write(fds[1], line, (size_t)len) < 0) {
        /* the host gave up on it already */
      }
      if (fd >= 0)
        kill(pid, SIGKILL);
    }
    if (fd >= 0)
      close(fd);
  }
  for (int i = 0; i < HS_ZYGOTE_FDS; i++)
    if (fds[i] >= 0)
      close(fds[i]);
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
  /* The host's spare: its pid, or 0 when it has none (one is forked
   * after 20 ms of quiet: not while a validation competes for the CPU). */
  pid_t given = give_spare(sigfd);
  for (;;) {
    struct pollfd p[2] = {{HOST_FD, POLLIN, 0}, {sigfd, POLLIN, 0}};
    int n = poll(p, 2, given ? -1 : 20);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      _exit(6);
    }
    if (n == 0) {
      given = give_spare(sigfd);
      continue;
    }
    if (p[1].revents && reap(sigfd, given))
      given = 0;
    if (p[0].revents)
      dispatch(sigfd);
  }
}
