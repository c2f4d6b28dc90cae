/* sandbox.c - the host's side of validation; see sandbox.h. */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

extern char **environ;

#define EXITS 64 /* exit statuses remembered for validators not yet judged */

struct hs_sandbox_pool {
  hs_loop *loop;
  hs_log_format log_format;
  hs_log_level log_level;
  pid_t zpid;             /* the zygote; 0 when it is not running */
  int zfd;                /* our end of its socket */
  hs_io zio;
  struct {
    pid_t pid;            /* 0 when the zygote has not handed one over */
    int fd;               /* its request socket */
    int pidfd;
  } spare;                /* a validator waiting for our request */
  unsigned zgen;          /* zygotes stopped so far */
  hs_sandbox *active;     /* validations under way */
  struct {
    pid_t pid;
    int status;
    unsigned zgen;
  } exits[EXITS];         /* ring of statuses the zygote reported */
  unsigned nexits;
};

struct hs_sandbox {
  hs_sandbox_pool *pool;
  hs_sandbox *next;       /* in pool->active */
  pid_t pid;              /* the validator, once it said so */
  int pidfd;              /* to kill it without racing pid reuse */
  int rfd;                /* read end of its report pipe */
  int sfd;                /* read end of its stage pipe (never watched) */
  hs_io io;
  hs_timer timer;         /* the timeout */
  hs_buf report;
  size_t parsed;          /* bytes of report already parsed */
  hs_buf stages;
  size_t stages_parsed;
  int eof;                /* the report pipe closed */
  int final;              /* "ok" or "fail" was read */
  int ok;
  int timed_out;
  int zygote_gone;        /* its zygote died: judged from the loop */
  unsigned zgen;          /* the zygote it ran under (pool->zgen then) */
  int exited, status;     /* exit status, once the zygote told */
  hs_state_snap *snap;    /* the state snapshot it reads, or NULL */
  char stage[16];         /* the stage last announced */
  hs_verdict v;
  uint32_t timeout_ms, cpu_s;
  uint64_t start_ns;
  char file[256];
  hs_sandbox_cb cb;
  hs_compile_cb ccb;      /* set for a compile instead of cb */
  void *data;
};

static void zygote_stop(hs_sandbox_pool *pool);
static void read_stages(hs_sandbox *sb);

static void unlink_active(hs_sandbox *sb) {
  for (hs_sandbox **p = &sb->pool->active; *p; p = &(*p)->next)
    if (*p == sb) {
      *p = sb->next;
      return;
    }
}

static void sandbox_free(hs_sandbox *sb) {
  unlink_active(sb);
  hs_loop_io_stop(&sb->io);
  hs_loop_timer_stop(&sb->timer);
  if (sb->pidfd >= 0)
    close(sb->pidfd);
  if (sb->rfd >= 0)
    close(sb->rfd);
  if (sb->sfd >= 0)
    close(sb->sfd);
  hs_buf_free(&sb->report);
  hs_buf_free(&sb->stages);
  free(sb);
}

static void kill_validator(hs_sandbox *sb) {
  if (sb->pidfd >= 0)
    syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0);
}

/* Fills sb->v.err from what is known: timeout, signal, report, status. */
static void judge(hs_sandbox *sb) {
  hs_verdict *v = &sb->v;
  const char *stage = sb->stage;

  read_stages(sb); /* the last one names where it died */
  if (sb->final && (sb->ok || v->err.code != 0))
    return; /* the validator's own verdict */
  if (sb->timed_out) {
    hs_error_set(&v->err, HS_ETIMEDOUT, stage,
                 "%s timed out after %" PRIu32 " ms in stage %s (the "
                 "validator was killed)",
                 sb->file, sb->timeout_ms, stage);
  } else if (sb->exited && WIFSIGNALED(sb->status)) {
    int sig = WTERMSIG(sb->status);
    const char *abbrev = sigabbrev_np(sig);
    if (sig == SIGXCPU)
      hs_error_set(&v->err, HS_ECRASH, stage,
                   "%s used up the sandbox's CPU limit of %" PRIu32
                   " s (SIGXCPU) in stage %s",
                   sb->file, sb->cpu_s, stage);
    else
      hs_error_set(&v->err, HS_ECRASH, stage,
                   "%s crashed with SIG%s (%s) in stage %s", sb->file,
                   abbrev ? abbrev : "?", strsignal(sig), stage);
  } else if (sb->exited) {
    hs_error_set(&v->err, HS_ESANDBOX, stage,
                 "the validator of %s exited with status %d in stage %s "
                 "before giving a verdict (did the plugin call exit()?)",
                 sb->file, WEXITSTATUS(sb->status), stage);
  } else {
    hs_error_set(&v->err, HS_ESANDBOX, stage,
                 "the validator of %s vanished in stage %s (the validator "
                 "zygote died)",
                 sb->file, stage);
  }
}

/* A compile's outcome, from its exit status. */
static void finish_compile(hs_sandbox *sb) {
  hs_compile_result r;
  const char *out = sb->report.data ? sb->report.data + sb->parsed : "";
  char first[300] = "";

  memset(&r, 0, sizeof(r));
  r.output = out;
  r.output_len = sb->report.len - sb->parsed;
  /* The first line that says "error" is the one worth a summary. */
  for (const char *l = out; l && *l;) {
    const char *nl = strchr(l, '\n');
    size_t len = nl ? (size_t)(nl - l) : strlen(l);
    if (memmem(l, len, "error", 5)) {
      snprintf(first, sizeof(first), ": %.*s", (int)len, l);
      break;
    }
    l = nl ? nl + 1 : NULL;
  }
  if (sb->timed_out) {
    hs_error_set(&r.err, HS_ETIMEDOUT, "compile",
                 "the compiler timed out after %" PRIu32 " ms on %s (it was "
                 "killed)",
                 sb->timeout_ms, sb->file);
  } else if (!sb->exited) {
    hs_error_set(&r.err, HS_ESANDBOX, "compile",
                 "the compiler of %s vanished (the zygote died)", sb->file);
  } else if (WIFSIGNALED(sb->status)) {
    const char *abbrev = sigabbrev_np(WTERMSIG(sb->status));
    hs_error_set(&r.err, HS_ECOMPILE, "compile",
                 "the compiler was killed by SIG%s compiling %s",
                 abbrev ? abbrev : "?", sb->file);
  } else if (WEXITSTATUS(sb->status) == 127 &&
             strncmp(out, "hotswap: cannot run", 19) == 0) {
    const char *nl = strchr(out, '\n');
    /* "hotswap: cannot run ...": without the prefix and the newline */
    hs_error_set(&r.err, HS_ENOENT, "compile", "%.*s",
                 (int)((nl ? nl - out : (long)strlen(out)) - 9), out + 9);
  } else if (WEXITSTATUS(sb->status) != 0) {
    hs_error_set(&r.err, HS_ECOMPILE, "compile",
                 "%s does not compile (the compiler exited with status %d)%s",
                 sb->file, WEXITSTATUS(sb->status), first);
  } else {
    r.ok = 1;
  }
  r.elapsed_ns = hs_now_ns() - sb->start_ns;
  sb->ccb(sb, &r, sb->data);
  sandbox_free(sb);
}

static void finish(hs_sandbox *sb) {
  if (sb->ccb) {
    if (!sb->exited || sb->timed_out)
      kill(-sb->pid, SIGKILL); /* the compiler's whole process group */
    finish_compile(sb);
    return;
  }
  judge(sb);
  sb->v.elapsed_ns = hs_now_ns() - sb->start_ns;
  if (!sb->final)
    kill_validator(sb); /* harmless if it is gone */
  if (sb->snap)
    hs_state_snap_done(sb->snap); /* it read the state before its verdict,
                                     or it is killed */
  sb->cb(sb, &sb->v, sb->data);
  sandbox_free(sb);
}

/* One line of the validator's: returns 1 if it is the verdict. */
static int parse_line(hs_sandbox *sb, const char *line) {
  unsigned a, b;
  int code, off = 0;
  char word[16];

  if (sscanf(line, "stage %15s", word) == 1) {
    snprintf(sb->stage, sizeof(sb->stage), "%s", word);
  } else if (sscanf(line, "pid %u", &a) == 1 && sb->pid == 0) {
    sb->pid = (pid_t)a;
    sb->pidfd = (int)syscall(SYS_pidfd_open, sb->pid, 0);
  } else if (sscanf(line, "desc %u %u %n", &a, &b, &off) == 2 && off) {
    sb->v.state_version = a;
    sb->v.state_size = b;
    snprintf(sb->v.version, sizeof(sb->v.version), "%s", line + off);
  } else if (sscanf(line, "fail %15s %d %n", word, &code, &off) == 2 &&
             off) {
    hs_error_set(&sb->v.err, code < 0 ? code : HS_ESANDBOX, word, "%s",
                 line + off);
    sb->final = 1;
    return 1;
  } else if (strcmp(line, "ok") == 0) {
    sb->ok = sb->final = 1;
    return 1;
  }
  return 0;
}

/* Parses the complete lines of buf from *parsed on; returns 1 once the
 * verdict is in. */
static int parse_lines(hs_sandbox *sb, hs_buf *buf, size_t *parsed) {
  while (*parsed < buf->len) {
    char *line = buf->data + *parsed;
    char *nl = memchr(line, '\n', buf->len - *parsed);
    if (!nl)
      break;
    *nl = '\0';
    *parsed += (size_t)(nl - line) + 1;
    if (parse_line(sb, line))
      return 1;
  }
  return sb->final;
}

/* Reads what fd has now into buf; returns 1 at its end. */
static int drain(int fd, hs_buf *buf) {
  char chunk[4096];
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n > 0) {
      hs_buf_append(buf, chunk, (size_t)n);
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    return n == 0;
  }
}

/* The stages (and the descriptor) the validator wrote so far. */
static void read_stages(hs_sandbox *sb) {
  if (sb->sfd < 0)
    return;
  drain(sb->sfd, &sb->stages);
  parse_lines(sb, &sb->stages, &sb->stages_parsed);
}

/* Parses complete report lines, after the stages written before them;
 * returns 1 once the verdict is in. */
static int parse(hs_sandbox *sb) {
  read_stages(sb);
  return parse_lines(sb, &sb->report, &sb->parsed);
}

/* Looks up an exit status the zygote reported before we needed it. */
static int known_exit(hs_sandbox *sb) {
  hs_sandbox_pool *pool = sb->pool;
  for (unsigned i = 0; i < EXITS && i < pool->nexits; i++)
    if (sb->pid && pool->exits[i].pid == sb->pid &&
        pool->exits[i].zgen == sb->zgen) {
      sb->exited = 1;
      sb->status = pool->exits[i].status;
      return 1;
    }
  return 0;
}

static void on_report(hs_io *io, uint32_t events) {
  hs_sandbox *sb = io->data;
  (void)events;
  if (drain(sb->rfd, &sb->report))
    sb->eof = 1;
  if (sb->ccb) {
    /* A compile: the first line is the child's pid, the rest output. */
    if (sb->pid == 0 && sb->report.data) {
      char *nl = memchr(sb->report.data, '\n', sb->report.len);
      unsigned pid;
      if (nl && sscanf(sb->report.data, "pid %u", &pid) == 1) {
        sb->pid = (pid_t)pid;
        sb->parsed = (size_t)(nl - sb->report.data) + 1;
      }
    }
  } else if (parse(sb)) {
    finish(sb);
    return;
  }
  if (sb->eof) {
    hs_loop_io_stop(&sb->io);
    /* No exit status comes from a zygote that is gone (even if another
     * runs now). */
    if (known_exit(sb) || sb->pid == 0 || sb->zgen != sb->pool->zgen)
      finish(sb);
    /* else: the zygote's "exit" message will come */
  }
}

static void on_timeout(hs_timer *t) {
  hs_sandbox *sb = t->data;
  if (sb->zygote_gone) {
    finish(sb); /* no exit status will come */
    return;
  }
  if (sb->ccb && !sb->timed_out && sb->pid > 0 && !sb->exited) {
    sb->timed_out = 1;
    kill(-sb->pid, SIGKILL); /* the compiler and all it started */
    hs_loop_timer_start(sb->pool->loop, &sb->timer, 2000000000u, 0);
    return;
  }
  if (!sb->timed_out && sb->pidfd >= 0 && !sb->eof) {
    sb->timed_out = 1;
    kill_validator(sb);
    /* Its end comes back through on_report and the zygote; if it does
     * not within 2 s, judge without it. */
    hs_loop_timer_start(sb->pool->loop, &sb->timer, 2000000000u, 0);
    return;
  }
  sb->timed_out = 1;
  finish(sb);
}

/* Lets go of the spare the zygote handed over (it exits when it sees its
 * socket's end). */
static void drop_spare(hs_sandbox_pool *pool) {
  if (pool->spare.fd >= 0)
    close(pool->spare.fd);
  if (pool->spare.pidfd >= 0)
    close(pool->spare.pidfd);
  pool->spare.pid = 0;
  pool->spare.fd = pool->spare.pidfd = -1;
}

/* The zygote handed over a spare ("spare PID" with its socket): the next
 * validation goes straight to it. */
static void take_spare(hs_sandbox_pool *pool, const char *msg, int fd) {
  int pid;
  if (sscanf(msg, "spare %d", &pid) != 1 || pid <= 0 || fd < 0) {
    if (fd >= 0)
      close(fd);
    return;
  }
  drop_spare(pool);
  pool->spare.pid = (pid_t)pid;
  pool->spare.fd = fd;
  /* Before it can be reaped: the pid cannot be someone else's yet. */
  pool->spare.pidfd = (int)syscall(SYS_pidfd_open, pool->spare.pid, 0);
}

/* The zygote reported a child's end, handed over a spare, or went away. */
static void on_zygote(hs_io *io, uint32_t events) {
  hs_sandbox_pool *pool = io->data;
  char msg[128];
  (void)events;
  for (;;) {
    int fd;
    ssize_t n = hs_zygote_recv(pool->zfd, msg, sizeof(msg) - 1, &fd, 1,
                               MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN)
      return;
    if (n <= 0) {
      hs_log(HS_LOG_WARN, NULL, "warning",
             "the validator zygote (pid %d) went away; it is started "
             "again with the next validation",
             (int)pool->zpid);
      zygote_stop(pool);
      /* Validations whose report is over can be judged now. */
      for (hs_sandbox *sb = pool->active, *next; sb; sb = next) {
        next = sb->next;
        if (sb->eof)
          finish(sb);
      }
      return;
    }
    msg[n] = '\0';
    if (strncmp(msg, "spare ", 6) == 0) {
      take_spare(pool, msg, fd);
      continue;
    }
    if (fd >= 0)
      close(fd);
    int pid, status;
    if (sscanf(msg, "exit %d %d", &pid, &status) != 2)
      continue;
    if (pid == pool->spare.pid)
      drop_spare(pool); /* it died waiting */
    pool->exits[pool->nexits % EXITS].pid = pid;
    pool->exits[pool->nexits % EXITS].status = status;
    pool->exits[pool->nexits++ % EXITS].zgen = pool->zgen;
    for (hs_sandbox *sb = pool->active; sb; sb = sb->next)
      if (sb->pid == pid && sb->zgen == pool->zgen) {
        sb->exited = 1;
        sb->status = status;
        if (sb->eof && !sb->final)
          finish(sb);
        break;
      }
  }
}

static void zygote_stop(hs_sandbox_pool *pool) {
  drop_spare(pool);
  if (pool->zpid == 0)
    return;
  pool->zgen++;
  hs_loop_io_stop(&pool->zio);
  close(pool->zfd); /* the zygote exits when it sees the end */
  pool->zfd = -1;
  waitpid(pool->zpid, NULL, 0);
  pool->zpid = 0;
}

static int zygote_start(hs_sandbox_pool *pool, hs_error *err) {
  int sv[2], rc;
  char host[16], logf[4], logl[4];
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none, all;

  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return hs_error_set(err, -errno, "sandbox",
                        "cannot make the zygote's socket: %s",
                        strerror(errno));
  snprintf(host, sizeof(host), "%d", (int)getpid());
  snprintf(logf, sizeof(logf), "%d", (int)pool->log_format);
  snprintf(logl, sizeof(logl), "%d", (int)pool->log_level);
  char *argv[] = {(char *)"hotswap-zygote", (char *)HS_ZYGOTE_ARG, host, logf,
                  logl, NULL};

  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
  posix_spawn_file_actions_addclosefrom_np(&fa, 4);
  posix_spawnattr_init(&attr);
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
  /* /proc/self/exe is the image running now, even if its file was
   * replaced: the validator speaks exactly this host's ABI. */
  rc = posix_spawn(&pool->zpid, "/proc/self/exe", &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(sv[1]);
  if (rc != 0) {
    close(sv[0]);
    pool->zpid = 0;
    return hs_error_set(err, -rc, "sandbox",
                        "cannot start the validator zygote: %s",
                        strerror(rc));
  }
  pool->zfd = sv[0];
  rc = hs_loop_io_start(pool->loop, &pool->zio, pool->zfd, EPOLLIN, on_zygote,
                        pool);
  if (rc != 0) {
    zygote_stop(pool);
    return hs_error_set(err, rc, "sandbox", "cannot watch the zygote: %s",
                        hs_strerror(rc));
  }
  return 0;
}

int hs_sandbox_pool_open(hs_sandbox_pool **out, hs_loop *loop,
                         hs_log_format log_format, hs_log_level log_level,
                         hs_error *err) {
  hs_sandbox_pool *pool = calloc(1, sizeof(*pool));
  if (!pool)
    return hs_error_set(err, HS_ENOMEM, "sandbox", "out of memory");
  pool->loop = loop;
  pool->log_format = log_format;
  pool->log_level = log_level;
  pool->zfd = -1;
  pool->spare.fd = pool->spare.pidfd = -1;
  int rc = zygote_start(pool, err);
  if (rc != 0) {
    free(pool);
    return rc;
  }
  *out = pool;
  return 0;
}

void hs_sandbox_pool_close(hs_sandbox_pool *pool) {
  if (!pool)
    return;
  while (pool->active)
    hs_sandbox_cancel(pool->active);
  zygote_stop(pool);
  free(pool);
}

/* The validator's argv, NUL-separated, as hs_sandbox_child_main reads it. */
static void build_request(hs_buf *b, const hs_sandbox_req *req) {
  hs_buf_init(b);
  hs_buf_printf(b, "hotswap-sandbox%c%s%c%s%c%s%c%s%c%s%c", 0, HS_SANDBOX_ARG,
                0, req->name, 0, req->dir, 0, req->file, 0, req->path, 0);
  hs_buf_printf(b, "%d%c%d%c%d%c%" PRIu32 "%c%" PRIu32 "%c", (int)req->reason,
                0, req->allow_reset ? 1 : 0, 0, req->state ? 1 : 0, 0,
                req->state ? req->state->version : 0, 0,
                req->state ? req->state->size : 0, 0);
  hs_buf_printf(b, "%" PRIu32 "%c%" PRIu64 "%c0%c%d%c%d", req->limits.cpu_s,
                0, req->limits.mem_bytes, 0, 0, (int)req->log_format, 0,
                (int)req->log_level);
  /* The version being replaced: its version string and its ranges ("-"
   * for none: an empty last argument would not be seen). */
  hs_buf_printf(b, "%c%s%c", 0, req->old_version ? req->old_version : "", 0);
  if (req->old_map && req->old_map->n > 0)
    hs_imagemap_encode(req->old_map, b);
  else
    hs_buf_puts(b, "-");
}

/* Sends the request to the spare the zygote handed over, if there is one
 * (a validation only: a compile's first line must be its pid). Returns 0
 * with sb's pid and pidfd set, -1 if it must go through the zygote. */
static int send_to_spare(hs_sandbox_pool *pool, hs_sandbox *sb,
                         const hs_buf *msg, const int *fds) {
  if (pool->spare.pid == 0 || sb->ccb)
    return -1;
  /* A zygote that died (its socket hung up) takes its spare along, maybe
   * after our request is queued: then it is lost. The zygote's path finds
   * out and starts another. */
  struct pollfd p = {pool->zfd, POLLIN, 0};
  if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR))) {
    drop_spare(pool);
    return -1;
  }
  if (hs_zygote_send(pool->spare.fd, msg->data, msg->len, fds,
                     HS_ZYGOTE_FDS) != 0) {
    drop_spare(pool); /* it died; the zygote will say so */
    return -1;
  }
  sb->pid = pool->spare.pid;
  sb->pidfd = pool->spare.pidfd;
  pool->spare.pidfd = -1;
  drop_spare(pool);
  return 0;
}

/* Sends the request to the zygote (starting another if it died). Returns
 * 0, or a negative code with err filled. */
static int send_to_zygote(hs_sandbox_pool *pool, hs_sandbox *sb,
                          const hs_buf *msg, const int *fds, hs_error *err) {
  int rc, sent = hs_zygote_send(pool->zfd, msg->data, msg->len, fds,
                                HS_ZYGOTE_FDS);
  if (sent != 0 && (errno == EPIPE || errno == ECONNRESET)) {
    /* The zygote died and the loop has not heard yet: start another. */
    hs_log(HS_LOG_WARN, NULL, "warning",
           "the validator zygote (pid %d) is gone; starting another",
           (int)pool->zpid);
    zygote_stop(pool);
    /* Those whose report ended waited for the dead zygote's word: judge
     * them from the loop (not here, where their callbacks could start
     * validations in the middle of this one). */
    for (hs_sandbox *o = pool->active; o; o = o->next)
      if (o != sb && o->eof && !o->final) {
        o->zygote_gone = 1;
        hs_loop_timer_start(pool->loop, &o->timer, 0, 0);
      }
    if ((rc = zygote_start(pool, err)) != 0)
      return rc;
    sent = hs_zygote_send(pool->zfd, msg->data, msg->len, fds, HS_ZYGOTE_FDS);
  }
  if (sent != 0)
    return hs_error_set(err, HS_ESANDBOX, "sandbox",
                        "cannot reach the validator zygote for %s: %s",
                        sb->file, strerror(errno));
  return 0;
}

/* Hands one request (the child's argv, NUL-separated, and a state fd) to
 * the spare or the zygote, and watches its report. Takes over statefd. */
static int submit(hs_sandbox **out, hs_sandbox_pool *pool, hs_sandbox *sb,
                  int statefd, hs_buf *msg, uint32_t timeout_ms,
                  hs_error *err) {
  int report[2] = {-1, -1}, stages[2] = {-1, -1}, rc;

  sb->pool = pool;
  sb->pidfd = sb->rfd = sb->sfd = -1;
  hs_buf_init(&sb->report);
  hs_buf_init(&sb->stages);
  hs_loop_timer_init(&sb->timer, on_timeout, sb);
  snprintf(sb->stage, sizeof(sb->stage), "start");
  sb->timeout_ms = timeout_ms;
  sb->next = pool->active;
  pool->active = sb;

  if (msg->oom) {
    rc = hs_error_set(err, HS_ENOMEM, "sandbox", "out of memory");
    goto fail;
  }
  if (pool->zpid == 0 && (rc = zygote_start(pool, err)) != 0)
    goto fail;
  if (statefd >= 0 && pipe2(report, O_CLOEXEC | O_NONBLOCK) == 0) {
    sb->rfd = report[0];
    if (pipe2(stages, O_CLOEXEC | O_NONBLOCK) == 0)
      sb->sfd = stages[0];
  }
  if (sb->sfd < 0) {
    rc = hs_error_set(err, statefd < 0 ? statefd : -errno, "sandbox",
                      "cannot prepare the sandbox for %s: %s", sb->file,
                      strerror(statefd < 0 ? -statefd : errno));
    goto fail;
  }
  /* The report's write end must block in the child: clear O_NONBLOCK on
   * it (pipe2 set it on both ends). The stages' stays non-blocking. */
  fcntl(report[1], F_SETFL, 0);
  sb->start_ns = hs_now_ns();
  int fds[HS_ZYGOTE_FDS] = {statefd, report[1], stages[1]};
  if (send_to_spare(pool, sb, msg, fds) != 0 &&
      (rc = send_to_zygote(pool, sb, msg, fds, err)) != 0)
    goto fail;
  sb->zgen = pool->zgen;
  for (int i = 0; i < HS_ZYGOTE_FDS; i++)
    close(fds[i]);
  statefd = report[1] = stages[1] = -1;
  rc = hs_loop_io_start(pool->loop, &sb->io, sb->rfd, EPOLLIN, on_report, sb);
  if (rc == 0)
    rc = hs_loop_timer_start(pool->loop, &sb->timer,
                             (uint64_t)timeout_ms * 1000000u, 0);
  if (rc != 0) {
    hs_error_set(err, rc, "sandbox", "cannot watch the sandbox of %s",
                 sb->file);
    goto fail;
  }
  hs_buf_free(msg);
  *out = sb;
  return 0;

fail:
  hs_buf_free(msg);
  if (statefd >= 0)
    close(statefd);
  if (report[1] >= 0)
    close(report[1]);
  if (stages[1] >= 0)
    close(stages[1]);
  sandbox_free(sb);
  return rc;
}

int hs_sandbox_start(hs_sandbox **out, hs_sandbox_pool *pool,
                     const hs_sandbox_req *req, hs_sandbox_cb cb, void *data,
                     hs_error *err) {
  hs_buf msg;
  hs_sandbox *sb = calloc(1, sizeof(*sb));
  if (!sb)
    return hs_error_set(err, HS_ENOMEM, "sandbox", "out of memory");
  sb->cpu_s = req->limits.cpu_s;
  sb->cb = cb;
  sb->data = data;
  snprintf(sb->file, sizeof(sb->file), "%s", req->file);
  build_request(&msg, req);
  int statefd = req->state ? hs_state_snap_write(req->snap, req->state)
                           : memfd_create("hotswap-state", MFD_CLOEXEC);
  if (req->state && statefd >= 0)
    sb->snap = req->snap;
  return submit(out, pool, sb, statefd, &msg, req->limits.timeout_ms, err);
}

int hs_sandbox_compile(hs_sandbox **out, hs_sandbox_pool *pool,
                       const hs_compile_req *req, hs_compile_cb cb,
                       void *data, hs_error *err) {
  hs_buf msg;
  hs_sandbox *sb = calloc(1, sizeof(*sb));
  if (!sb)
    return hs_error_set(err, HS_ENOMEM, "compile", "out of memory");
  sb->cpu_s = req->limits.cpu_s;
  sb->ccb = cb;
  sb->data = data;
  snprintf(sb->file, sizeof(sb->file), "%s", req->file);
  hs_buf_init(&msg);
  hs_buf_printf(&msg, "hotswap-compile%c%s%c%s%c%" PRIu32 "%c%" PRIu64, 0,
                HS_COMPILE_ARG, 0, req->cwd, 0, req->limits.cpu_s, 0,
                req->limits.mem_bytes);
  for (char *const *a = req->argv; *a; a++)
    hs_buf_printf(&msg, "%c%s", 0, *a);
  return submit(out, pool, sb, memfd_create("hotswap-none", MFD_CLOEXEC),
                &msg, req->limits.timeout_ms, err);
}

void hs_sandbox_cancel(hs_sandbox *sb) {
  char chunk[4096];
  ssize_t n;
  if (!sb)
    return;
  /* The child's pid may be in the pipe, unread: look for it. If it is not
   * even written yet, closing our end kills the child at its first write
   * (SIGPIPE: its report is the first thing it writes). */
  while (!sb->ccb && sb->pid == 0 && sb->rfd >= 0 &&
         (n = read(sb->rfd, chunk, sizeof(chunk))) > 0) {
    hs_buf_append(&sb->report, chunk, (size_t)n);
    parse(sb);
  }
  if (sb->ccb && sb->pid == 0 && sb->rfd >= 0 &&
      (n = read(sb->rfd, chunk, sizeof(chunk) - 1)) > 0) {
    unsigned pid;
    chunk[n] = '\0';
    if (sscanf(chunk, "pid %u", &pid) == 1)
      sb->pid = (pid_t)pid;
  }
  if (sb->ccb && sb->pid > 0)
    kill(-sb->pid, SIGKILL); /* the compiler and all it started */
  kill_validator(sb);
  sandbox_free(sb);
}
