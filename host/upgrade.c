/* upgrade.c - checking a new host binary and re-executing into it; see
 * upgrade.h. */
#include "upgrade.h"

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache.h"
#include "file.h"
#include "handoff.h"
#include "log.h"

extern char **environ;

#define CHECK_LINE "hotswap-upgrade-check "
#define CHECK_OUT_MAX 8192

char *hs_upgrade_resolve(const char *argv0) {
  char buf[PATH_MAX];

  if (!argv0 || !*argv0)
    return NULL;
  if (strchr(argv0, '/'))
    return realpath(argv0, buf) ? strdup(buf) : NULL;
  const char *p = getenv("PATH");
  if (!p)
    p = "/usr/local/bin:/usr/bin:/bin";
  while (*p) {
    size_t n = strcspn(p, ":");
    char cand[PATH_MAX];
    snprintf(cand, sizeof(cand), "%.*s/%s", (int)(n ? n : 1),
             n ? p : ".", argv0);
    if (access(cand, X_OK) == 0 && realpath(cand, buf))
      return strdup(buf);
    p += n + (p[n] == ':');
  }
  return NULL;
}

/* Hashes the file behind fd. Returns 0 or a negative code. */
static int hash_fd(int fd, uint64_t *hash) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return -errno;
  if (!S_ISREG(st.st_mode))
    return HS_EINVAL;
  size_t size = (size_t)st.st_size;
  char *p = malloc(size ? size : 1);
  if (!p)
    return HS_ENOMEM;
  *hash = hs_hash(p, hs_file_read(fd, p, size, 0));
  free(p);
  return 0;
}

static int hash_path(const char *path, uint64_t *hash) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int rc = hash_fd(fd, hash);
  close(fd);
  return rc;
}

/* Explains why fd (the candidate, at path) cannot be executed: e is the
 * errno execve or posix_spawn gave. */
static int explain_exec(hs_error *err, int e, int fd, const char *path) {
  unsigned char head[64] = {0};
  struct stat st = {0};
  ssize_t n = pread(fd, head, sizeof(head), 0);
  fstat(fd, &st);

  switch (e) {
  case EACCES:
    return hs_error_set(err, HS_EACCES, "upgrade",
                        "%s is not executable (mode %04o): chmod +x it, "
                        "or its file system is mounted noexec (EACCES)",
                        path, (unsigned)(st.st_mode & 07777));
  case ENOEXEC:
    if (n >= 2 && head[0] == '#' && head[1] == '!')
      return hs_error_set(err, HS_EINVAL, "upgrade",
                          "%s is a script whose interpreter line is not "
                          "usable (ENOEXEC)",
                          path);
    if (n >= 4 && memcmp(head, ELFMAG, SELFMAG) == 0) {
      const Elf64_Ehdr *eh = (const void *)head;
      if (n >= (ssize_t)sizeof(*eh) && head[EI_CLASS] == ELFCLASS64 &&
          eh->e_machine != EM_X86_64 && eh->e_machine != EM_AARCH64)
        return hs_error_set(err, HS_EINVAL, "upgrade",
                            "%s is an ELF for another machine (e_machine "
                            "%u) (ENOEXEC)",
                            path, (unsigned)eh->e_machine);
      return hs_error_set(err, HS_EINVAL, "upgrade",
                          "%s is not a complete executable for this machine "
                          "(%lld bytes: truncated or damaged ELF) (ENOEXEC)",
                          path, (long long)st.st_size);
    }
    return hs_error_set(err, HS_EINVAL, "upgrade",
                        "%s is not an executable: not an ELF, and no \"#!\" "
                        "line (a script needs one) (ENOEXEC: Exec format "
                        "error)",
                        path);
  case ETXTBSY:
    return hs_error_set(err, -e, "upgrade",
                        "%s is still open for writing (ETXTBSY); wait for "
                        "the build to finish",
                        path);
  case ENOENT:
    return hs_error_set(err, -e, "upgrade",
                        "%s: its program interpreter (dynamic loader) or the "
                        "file itself does not exist (ENOENT)",
                        path);
  default:
    return hs_error_set(err, -e, "upgrade", "%s cannot be executed: %s", path,
                        strerror(e));
  }
}

static void check_stop(hs_upgrade *up) {
  hs_loop_io_stop(&up->pid_io);
  hs_loop_io_stop(&up->out_io);
  hs_loop_timer_stop(&up->timer);
  if (up->pidfd >= 0)
    close(up->pidfd);
  if (up->outfd >= 0)
    close(up->outfd);
  up->pidfd = up->outfd = -1;
  up->checking = 0;
}

/* The last non-empty line of the check's output, for messages. */
static const char *last_line(hs_upgrade *up, char *buf, size_t size) {
  const char *s = up->out.data ? up->out.data : "";
  const char *best = "";
  size_t bestn = 0;
  while (*s) {
    size_t n = strcspn(s, "\n");
    if (n > 0) {
      best = s;
      bestn = n;
    }
    s += n + (s[n] == '\n');
  }
  snprintf(buf, size, "%.*s", (int)bestn, best);
  return buf;
}

/* Both the exit and the end of the output are in: judge and report. */
static void check_done(hs_upgrade *up) {
  hs_error err;
  char line[300];
  const char *ok = up->out.data ? strstr(up->out.data, CHECK_LINE) : NULL;
  const char *formats = ok ? strstr(ok, " handoff=1-") : NULL;
  int abi = 0, reads = 1;
  char version[64] = "", verdict[16] = "";

  waitpid(up->pid, &up->status, 0);
  check_stop(up);
  hs_error_clear(&err);
  if (ok)
    sscanf(ok + strlen(CHECK_LINE), "%15s version=%63s abi=%d", verdict,
           version, &abi);
  if (formats && (sscanf(formats, " handoff=1-%d", &reads) != 1 || reads < 1))
    reads = 1;
  if (up->timed_out) {
    hs_error_set(&err, HS_ETIMEDOUT, "upgrade",
                 "%s did not pass its check within %d ms (killed)", up->path,
                 HS_UPGRADE_CHECK_TIMEOUT_MS);
  } else if (WIFSIGNALED(up->status)) {
    int sig = WTERMSIG(up->status);
    hs_error_set(&err, HS_ECRASH, "upgrade",
                 "%s crashed in its check: SIG%s (signal %d)%s%s", up->path,
                 sigabbrev_np(sig) ? sigabbrev_np(sig) : "?", sig,
                 up->out.len ? "; it said: " : "",
                 last_line(up, line, sizeof(line)));
  } else if (WEXITSTATUS(up->status) != 0) {
    hs_error_set(&err, HS_EINVAL, "upgrade",
                 "%s failed its check (exit status %d): %s", up->path,
                 WEXITSTATUS(up->status),
                 *last_line(up, line, sizeof(line))
                     ? line
                     : "it printed nothing (not a hotswap binary?)");
  } else if (strcmp(verdict, "ok") != 0 || abi <= 0) {
    hs_error_set(&err, HS_EINVAL, "upgrade",
                 "%s exited 0 but did not report its version and plugin ABI "
                 "(not a hotswap binary?)",
                 up->path);
  } else if ((uint32_t)abi < up->need_abi) {
    hs_error_set(&err, HS_EABI, "upgrade",
                 "%s (hotswap %s) speaks plugin ABI %d, but a live plugin is "
                 "built for ABI %u",
                 up->path, version, abi, up->need_abi);
  }
  if (err.code != 0) {
    up->refused_hash = up->cand_hash;
    hs_upgrade_drop(up);
  } else {
    snprintf(up->new_version, sizeof(up->new_version), "%s", version);
    up->new_abi = abi;
    up->new_handoff =
        reads < HS_HANDOFF_VERSION ? (uint32_t)reads : HS_HANDOFF_VERSION;
  }
  up->cb(up, &err, up->data);
}

static void on_check_output(hs_io *io, uint32_t events) {
  hs_upgrade *up = io->data;
  char buf[1024];
  (void)events;
  for (;;) {
    ssize_t n = read(up->outfd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      return;
    if (n <= 0) {
      up->eof = 1;
      hs_loop_io_stop(&up->out_io);
      break;
    }
    if (up->out.len < CHECK_OUT_MAX)
      hs_buf_append(&up->out, buf, (size_t)n);
  }
  if (up->exited)
    check_done(up);
}

static void on_check_exit(hs_io *io, uint32_t events) {
  hs_upgrade *up = io->data;
  (void)events;
  up->exited = 1;
  hs_loop_io_stop(&up->pid_io);
  if (up->eof)
    check_done(up);
}

static void on_check_timeout(hs_timer *t) {
  hs_upgrade *up = t->data;
  up->timed_out = 1;
  syscall(SYS_pidfd_send_signal, up->pidfd, SIGKILL, NULL, 0);
}

static void on_binary(hs_watch *w, const char *name, hs_watch_event ev);

int hs_upgrade_init(hs_upgrade *up, hs_loop *loop, const char *path,
                    uint64_t hash, int watch, uint64_t settle_ns,
                    hs_upgrade_cb cb, void *data, hs_error *err) {
  memset(up, 0, sizeof(*up));
  up->loop = loop;
  up->cb = cb;
  up->data = data;
  up->settle_ns = settle_ns;
  up->binfd = up->pidfd = up->outfd = -1;
  hs_buf_init(&up->out);
  hs_loop_timer_init(&up->timer, on_check_timeout, up);
  up->path = strdup(path);
  if (!up->path)
    return hs_error_set(err, HS_ENOMEM, "upgrade", "out of memory");
  if (hash == 0) {
    int rc = hash_path(path, &hash);
    if (rc != 0) {
      hs_error_set(err, rc, "upgrade", "cannot read %s: %s", path,
                   hs_strerror(rc));
      free(up->path);
      up->path = NULL;
      return rc;
    }
  }
  up->hash = hash;
  if (watch) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
      slash[1] = '\0';
    else if (slash)
      *slash = '\0';
    int rc = hs_watch_start(&up->watch, loop, dir, settle_ns, on_binary, up);
    if (rc != 0) {
      hs_error_set(err, rc, "upgrade", "cannot watch %s: %s", dir,
                   hs_strerror(rc));
      free(up->path);
      up->path = NULL;
      return rc;
    }
    up->watching = 1;
  }
  return 0;
}

/* The watcher saw a name in the executable's directory change. */
static void on_binary(hs_watch *w, const char *name, hs_watch_event ev) {
  hs_upgrade *up = w->data;
  const char *base = strrchr(up->path, '/') + 1;
  if (ev == HS_WATCH_REMOVED || (name && strcmp(name, base) != 0))
    return;
  int rc = hs_upgrade_check(up, 0, up->need_abi);
  if (rc == HS_EBUSY)
    hs_log(HS_LOG_INFO, NULL, "upgrade",
           "%s changed again during its check; the check under way goes on",
           up->path);
}

void hs_upgrade_drop(hs_upgrade *up) {
  if (up->binfd >= 0)
    close(up->binfd);
  up->binfd = -1;
}

void hs_upgrade_close(hs_upgrade *up) {
  if (up->checking) {
    syscall(SYS_pidfd_send_signal, up->pidfd, SIGKILL, NULL, 0);
    waitpid(up->pid, NULL, 0);
    check_stop(up);
  }
  if (up->watching)
    hs_watch_stop(&up->watch);
  up->watching = 0;
  hs_upgrade_drop(up);
  hs_buf_free(&up->out);
  free(up->path);
  up->path = NULL;
}

int hs_upgrade_check(hs_upgrade *up, int force, uint32_t need_abi) {
  hs_error err;
  uint64_t hash = 0;
  char self[32], fmt[16];
  int fds[2] = {-1, -1};

  if (up->checking)
    return HS_EBUSY;
  hs_upgrade_drop(up);
  up->need_abi = need_abi;
  up->forced = force;
  int fd = open(up->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (!force && errno == ENOENT)
      return 1; /* renamed away; its replacement comes as a new event */
    hs_error_set(&err, -errno, "upgrade", "cannot open %s: %s", up->path,
                 strerror(errno));
    up->cb(up, &err, up->data);
    return 0;
  }
  int rc = hash_fd(fd, &hash);
  if (rc != 0) {
    close(fd);
    hs_error_set(&err, rc, "upgrade", "%s is not a regular file: %s",
                 up->path, hs_strerror(rc));
    up->cb(up, &err, up->data);
    return 0;
  }
  if (!force && (hash == up->hash || hash == up->refused_hash)) {
    close(fd);
    hs_log(HS_LOG_DEBUG, NULL, "upgrade", "%s: same content as before",
           up->path);
    return 1;
  }
  up->binfd = fd;
  up->cand_hash = hash;
  hs_log(HS_LOG_INFO, NULL, "upgrade", "checking %s%s", up->path,
         force ? " (forced)" : "");

  snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
  /* Format 1, which every hotswap reads: the answer says up to which
   * format the binary reads, and the handoff is written in the newest
   * both know (an older build can take over, without what it lacks). */
  snprintf(fmt, sizeof(fmt), "1");
  char *argv[] = {up->path, (char *)HS_UPGRADE_CHECK_ARG, fmt, NULL};
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none;
  if (pipe2(fds, O_CLOEXEC) != 0) {
    hs_error_set(&err, -errno, "upgrade", "pipe: %s", strerror(errno));
    hs_upgrade_drop(up);
    up->cb(up, &err, up->data);
    return 0;
  }
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawnattr_init(&attr);
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  rc = posix_spawn(&up->pid, self, &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    explain_exec(&err, rc, fd, up->path);
    if (rc != ETXTBSY) /* still being written: its close comes as an event */
      up->refused_hash = hash;
    hs_upgrade_drop(up);
    up->cb(up, &err, up->data);
    return 0;
  }
  up->outfd = fds[0];
  fcntl(up->outfd, F_SETFL, O_NONBLOCK);
  up->pidfd = (int)syscall(SYS_pidfd_open, up->pid, 0);
  up->exited = up->eof = up->timed_out = 0;
  hs_buf_reset(&up->out);
  up->checking = 1;
  if (up->pidfd < 0 ||
      hs_loop_io_start(up->loop, &up->pid_io, up->pidfd, EPOLLIN,
                       on_check_exit, up) != 0 ||
      hs_loop_io_start(up->loop, &up->out_io, up->outfd, EPOLLIN,
                       on_check_output, up) != 0) {
    kill(up->pid, SIGKILL);
    waitpid(up->pid, NULL, 0);
    check_stop(up);
    hs_error_set(&err, HS_EIO, "upgrade", "cannot watch the check of %s",
                 up->path);
    hs_upgrade_drop(up);
    up->cb(up, &err, up->data);
    return 0;
  }
  hs_loop_timer_start(up->loop, &up->timer,
                      (uint64_t)HS_UPGRADE_CHECK_TIMEOUT_MS * 1000000u, 0);
  return 0;
}

/* Sets or clears FD_CLOEXEC on fd; returns 1 if that changed it. */
static int set_cloexec(int fd, int on) {
  int fl = fcntl(fd, F_GETFD);
  if (fl < 0 || !!(fl & FD_CLOEXEC) == !!on)
    return 0;
  return fcntl(fd, F_SETFD, on ? fl | FD_CLOEXEC : fl & ~FD_CLOEXEC) == 0;
}

static int kept(int fd, int handoff_fd, const int *keep, size_t nkeep) {
  if (fd <= 2 || fd == handoff_fd)
    return 1;
  for (size_t i = 0; i < nkeep; i++)
    if (keep[i] == fd)
      return 1;
  return 0;
}

int hs_upgrade_exec(hs_upgrade *up, char *const argv[], int handoff_fd,
                    const int *keep, size_t nkeep, hs_error *err) {
  char self[32], env[16];
  int *changed = NULL; /* fds whose flag we flipped, to flip back */
  size_t nchanged = 0, cap = 0;
  DIR *d;

  fflush(NULL);
  if ((d = opendir("/proc/self/fd")) != NULL) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9')
        continue;
      int fd = atoi(e->d_name);
      if (fd == dirfd(d) || fd == up->binfd)
        continue;
      if (set_cloexec(fd, !kept(fd, handoff_fd, keep, nkeep))) {
        if (nchanged == cap) {
          size_t ncap = cap ? cap * 2 : 64;
          int *c = realloc(changed, ncap * sizeof(*c));
          if (!c)
            break;
          changed = c;
          cap = ncap;
        }
        changed[nchanged++] = fd;
      }
    }
    closedir(d);
  }
  snprintf(env, sizeof(env), "%d", handoff_fd);
  setenv(HS_HANDOFF_ENV, env, 1);
  snprintf(self, sizeof(self), "/proc/self/fd/%d", up->binfd);
  execv(self, argv);

  int e = errno;
  unsetenv(HS_HANDOFF_ENV);
  for (size_t i = 0; i < nchanged; i++) {
    int fl = fcntl(changed[i], F_GETFD);
    if (fl >= 0)
      fcntl(changed[i], F_SETFD, fl ^ FD_CLOEXEC);
  }
  free(changed);
  explain_exec(err, e, up->binfd, up->path);
  hs_upgrade_drop(up);
  return err->code;
}

int hs_upgrade_check_main(int argc, char **argv) {
  long want = argc > 2 ? strtol(argv[2], NULL, 10) : HS_HANDOFF_VERSION;
  if (want < 1 || want > HS_HANDOFF_VERSION) {
    printf(CHECK_LINE "refuse version=%s abi=%d: the running host hands over "
                      "format %ld; this binary reads formats 1 to %d\n",
           HS_VERSION_STRING, HS_ABI_VERSION, want, HS_HANDOFF_VERSION);
    return 3;
  }
  printf(CHECK_LINE "ok version=%s abi=%d handoff=1-%d\n", HS_VERSION_STRING,
         HS_ABI_VERSION, HS_HANDOFF_VERSION);
  return 0;
}
