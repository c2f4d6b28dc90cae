/* sandbox.c - the parent's side of validation; see sandbox.h. */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

extern char **environ;

struct hs_sandbox {
  hs_loop *loop;
  pid_t pid;
  int pidfd;           /* readable when the child has exited */
  int rfd;             /* read end of the verdict pipe */
  hs_io io;            /* on pidfd */
  hs_timer timer;      /* the timeout */
  int timed_out;
  uint32_t timeout_ms;
  uint32_t cpu_s;
  uint64_t start_ns;
  char file[256];
  hs_sandbox_cb cb;
  void *data;
};

static int pidfd_open_(pid_t pid) {
  return (int)syscall(SYS_pidfd_open, pid, 0);
}

static void sandbox_free(hs_sandbox *sb) {
  hs_loop_io_stop(&sb->io);
  hs_loop_timer_stop(&sb->timer);
  if (sb->pidfd >= 0)
    close(sb->pidfd);
  if (sb->rfd >= 0)
    close(sb->rfd);
  free(sb);
}

/* Reads what the child reported (it has exited: the pipe holds it all). */
static void read_report(hs_sandbox *sb, hs_buf *out) {
  char chunk[4096];
  for (;;) {
    ssize_t n = read(sb->rfd, chunk, sizeof(chunk));
    if (n > 0) {
      hs_buf_append(out, chunk, (size_t)n);
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    break;
  }
}

/* Turns the report and the exit status into a verdict. */
static void judge(hs_sandbox *sb, const char *report, int status,
                  hs_verdict *v) {
  char stage[16] = "spawn";
  int ok = 0, failed = 0;

  for (const char *line = report; line && *line;) {
    const char *nl = strchr(line, '\n');
    size_t len = nl ? (size_t)(nl - line) : strlen(line);
    char tmp[700];
    snprintf(tmp, sizeof(tmp), "%.*s", (int)len, line);
    unsigned sv, ss;
    int code, off = 0;
    char word[16];
    if (sscanf(tmp, "stage %15s", word) == 1) {
      snprintf(stage, sizeof(stage), "%s", word);
    } else if (sscanf(tmp, "desc %u %u %n", &sv, &ss, &off) == 2 && off) {
      v->state_version = sv;
      v->state_size = ss;
      snprintf(v->version, sizeof(v->version), "%s", tmp + off);
    } else if (sscanf(tmp, "fail %15s %d %n", word, &code, &off) == 2 &&
               off) {
      hs_error_set(&v->err, code, word, "%s", tmp + off);
      failed = 1;
    } else if (strcmp(tmp, "ok") == 0) {
      ok = 1;
    }
    line = nl ? nl + 1 : NULL;
  }

  if (sb->timed_out) {
    hs_error_set(&v->err, HS_ETIMEDOUT, stage,
                 "%s timed out after %u ms in stage %s (the validator was "
                 "killed)",
                 sb->file, sb->timeout_ms, stage);
  } else if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char *abbrev = sigabbrev_np(sig);
    if (sig == SIGXCPU)
      hs_error_set(&v->err, HS_ECRASH, stage,
                   "%s used up the sandbox's CPU limit of %u s (SIGXCPU) in "
                   "stage %s",
                   sb->file, sb->cpu_s, stage);
    else
      hs_error_set(&v->err, HS_ECRASH, stage,
                   "%s crashed with SIG%s (%s) in stage %s", sb->file,
                   abbrev ? abbrev : "?", strsignal(sig), stage);
  } else if (failed) {
    /* v->err already says it. */
  } else if (!ok || WEXITSTATUS(status) != 0) {
    hs_error_set(&v->err, HS_ESANDBOX, stage,
                 "the validator of %s exited with status %d in stage %s "
                 "before giving a verdict (did the plugin call exit()?)",
                 sb->file, WEXITSTATUS(status), stage);
  }
}

static void on_exit_(hs_io *io, uint32_t events) {
  hs_sandbox *sb = io->data;
  int status = 0;
  hs_verdict v;
  hs_buf report;
  (void)events;

  if (waitpid(sb->pid, &status, 0) < 0)
    status = 0;
  memset(&v, 0, sizeof(v));
  hs_buf_init(&report);
  read_report(sb, &report);
  judge(sb, report.data ? report.data : "", status, &v);
  hs_buf_free(&report);
  v.elapsed_ns = hs_now_ns() - sb->start_ns;

  sb->cb(sb, &v, sb->data);
  sandbox_free(sb);
}

static void on_timeout(hs_timer *t) {
  hs_sandbox *sb = t->data;
  sb->timed_out = 1;
  kill(sb->pid, SIGKILL);
}

/* Moves fd to a number >= 10, so that the dup2s of spawn cannot clash. */
static int fd_high(int fd) {
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  close(fd);
  return nfd;
}

int hs_sandbox_start(hs_sandbox **out, hs_loop *loop, const hs_sandbox_req *req,
                     hs_sandbox_cb cb, void *data, hs_error *err) {
  hs_sandbox *sb = calloc(1, sizeof(*sb));
  int pipefd[2] = {-1, -1}, statefd = -1, rc = 0;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none, all;
  char reason[16], reset[4], has_state[4], sv[16], ss[16], cpu[16], mem[32],
      ppid[16], logf[4], logl[4];

  if (!sb)
    return hs_error_set(err, HS_ENOMEM, "sandbox", "out of memory");
  sb->pidfd = sb->rfd = -1;
  hs_loop_timer_init(&sb->timer, on_timeout, sb);
  sb->loop = loop;
  sb->cb = cb;
  sb->data = data;
  sb->timeout_ms = req->limits.timeout_ms;
  sb->cpu_s = req->limits.cpu_s;
  snprintf(sb->file, sizeof(sb->file), "%s", req->file);

  if (req->state)
    statefd = hs_state_to_memfd(req->state);
  else
    statefd = memfd_create("hotswap-state", MFD_CLOEXEC);
  if (statefd < 0 || pipe2(pipefd, O_CLOEXEC) != 0) {
    rc = hs_error_set(err, -errno, "sandbox",
                      "cannot prepare the sandbox for %s: %s", req->file,
                      strerror(errno));
    goto fail;
  }
  statefd = fd_high(statefd);
  pipefd[1] = fd_high(pipefd[1]);
  sb->rfd = pipefd[0];
  fcntl(sb->rfd, F_SETFL, O_NONBLOCK);

  snprintf(reason, sizeof(reason), "%d", (int)req->reason);
  snprintf(reset, sizeof(reset), "%d", req->allow_reset ? 1 : 0);
  snprintf(has_state, sizeof(has_state), "%d", req->state ? 1 : 0);
  snprintf(sv, sizeof(sv), "%" PRIu32, req->state ? req->state->version : 0);
  snprintf(ss, sizeof(ss), "%" PRIu32, req->state ? req->state->size : 0);
  snprintf(cpu, sizeof(cpu), "%" PRIu32, req->limits.cpu_s);
  snprintf(mem, sizeof(mem), "%" PRIu64, req->limits.mem_bytes);
  snprintf(ppid, sizeof(ppid), "%d", (int)getpid());
  snprintf(logf, sizeof(logf), "%d", (int)req->log_format);
  snprintf(logl, sizeof(logl), "%d", (int)req->log_level);
  char *argv[] = {(char *)"hotswap-sandbox", (char *)HS_SANDBOX_ARG,
                  (char *)req->name, (char *)req->dir, (char *)req->file,
                  (char *)req->path, reason, reset, has_state, sv, ss, cpu,
                  mem, ppid, logf, logl, NULL};

  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, statefd, 3);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 4);
  posix_spawn_file_actions_addclosefrom_np(&fa, 5);
  posix_spawnattr_init(&attr);
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
  sb->start_ns = hs_now_ns();
  int e = posix_spawn(&sb->pid, "/proc/self/exe", &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(pipefd[1]);
  pipefd[1] = -1;
  close(statefd);
  statefd = -1;
  if (e != 0) {
    rc = hs_error_set(err, -e, "sandbox",
                      "cannot start the validator for %s: %s", req->file,
                      strerror(e));
    goto fail;
  }
  sb->pidfd = pidfd_open_(sb->pid);
  if (sb->pidfd < 0) {
    rc = hs_error_set(err, -errno, "sandbox",
                      "pidfd_open for the validator of %s: %s", req->file,
                      strerror(errno));
    kill(sb->pid, SIGKILL);
    waitpid(sb->pid, NULL, 0);
    goto fail;
  }
  rc = hs_loop_io_start(loop, &sb->io, sb->pidfd, EPOLLIN, on_exit_, sb);
  if (rc == 0)
    rc = hs_loop_timer_start(loop, &sb->timer,
                             (uint64_t)req->limits.timeout_ms * 1000000u, 0);
  if (rc != 0) {
    hs_error_set(err, rc, "sandbox", "cannot watch the validator of %s",
                 req->file);
    kill(sb->pid, SIGKILL);
    waitpid(sb->pid, NULL, 0);
    goto fail;
  }
  *out = sb;
  return 0;

fail:
  if (statefd >= 0)
    close(statefd);
  if (pipefd[1] >= 0)
    close(pipefd[1]);
  sandbox_free(sb);
  return rc;
}

void hs_sandbox_cancel(hs_sandbox *sb) {
  if (!sb)
    return;
  kill(sb->pid, SIGKILL);
  waitpid(sb->pid, NULL, 0);
  sandbox_free(sb);
}
