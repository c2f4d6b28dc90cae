/*
 * http_main.c - the http example plugin as an ordinary server process, for
 * the baseline of bench_load: "the same server, restarted as a whole
 * process". bench_load links this file with one build of plugins/http.c
 * into one executable per version and lets `entr -r` restart it whenever
 * the executable is replaced.
 *
 * This is the smallest host that runs one plugin for real: it calls the
 * plugin's entry symbol (linked in, no dlopen), gives it zeroed state and
 * serves its fds and timers from one epoll loop. Ticks are not supported
 * (http does not use them). SIGTERM and SIGINT unload the plugin
 * (HS_UNLOAD_SHUTDOWN) and exit 0, as a well-behaved server does when
 * entr restarts it.
 *
 *   http_server CONF_DIR      reads CONF_DIR/http.conf ("key = value")
 */
#define _GNU_SOURCE /* dprintf is POSIX; vdprintf too */

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "hotswap.h"

#define MAIN_FDS 4096  /* fd numbers the loop can watch */
#define MAIN_TIMERS 64 /* timers at once */
#define MAIN_CONF_MAX 32

struct hs_ctx {
  const hs_plugin *plugin;
  void *state;
  const char *dir;
};

typedef struct main_timer {
  int64_t id;        /* 0: slot free */
  uint64_t due_ns;   /* CLOCK_MONOTONIC */
  uint64_t repeat_ns;
  uint64_t token;
} main_timer;

static int epfd = -1;
static uint64_t tokens[MAIN_FDS];  /* token of each watched fd */
static unsigned char watched[MAIN_FDS];
static main_timer timers[MAIN_TIMERS];
static int64_t next_timer_id = 1;
static volatile sig_atomic_t stopping;
static char conf_key[MAIN_CONF_MAX][64], conf_val[MAIN_CONF_MAX][256];
static int nconf;

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the api ------------------------------------------------------------ */

static void api_log(hs_ctx *ctx, hs_log_level level, const char *fmt, ...) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  char line[1024];
  va_list ap;
  if (level < HS_LOG_INFO)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s %s: %s\n", ctx->plugin->name,
          names[level <= HS_LOG_ERROR ? level : HS_LOG_ERROR], line);
}

static const char *api_name(hs_ctx *ctx) { return ctx->plugin->name; }
static const char *api_dir(hs_ctx *ctx) { return ctx->dir; }
static uint64_t api_now_ns(hs_ctx *ctx) {
  (void)ctx;
  return mono_ns();
}
static int api_in_sandbox(hs_ctx *ctx) {
  (void)ctx;
  return 0;
}
static int api_tick_start(hs_ctx *ctx, uint32_t interval_ms) {
  (void)ctx;
  (void)interval_ms;
  return HS_ENOSYS;
}
static void api_tick_stop(hs_ctx *ctx) { (void)ctx; }

static int api_io_watch(hs_ctx *ctx, int fd, uint32_t events,
                        uint64_t token) {
  struct epoll_event ev = {0};
  if (fd < 0 || fd >= MAIN_FDS || !ctx->plugin->on_io)
    return HS_EINVAL;
  ev.events = (events & HS_IO_READ ? EPOLLIN | EPOLLRDHUP : 0) |
              (events & HS_IO_WRITE ? EPOLLOUT : 0);
  ev.data.fd = fd;
  if (epoll_ctl(epfd, watched[fd] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) !=
      0)
    return -errno;
  watched[fd] = 1;
  tokens[fd] = token;
  return 0;
}

static int api_io_unwatch(hs_ctx *ctx, int fd) {
  (void)ctx;
  if (fd < 0 || fd >= MAIN_FDS || !watched[fd])
    return HS_ENOENT;
  epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
  watched[fd] = 0;
  return 0;
}

static int api_io_close(hs_ctx *ctx, int fd) {
  int rc = api_io_unwatch(ctx, fd);
  if (rc == 0)
    close(fd);
  return rc;
}

static int64_t api_timer_start(hs_ctx *ctx, uint64_t after_ms,
                               uint64_t repeat_ms, uint64_t token) {
  if (!ctx->plugin->on_timer)
    return HS_EINVAL;
  for (int i = 0; i < MAIN_TIMERS; i++)
    if (timers[i].id == 0) {
      timers[i] = (main_timer){next_timer_id++, mono_ns() + after_ms * 1000000u,
                               repeat_ms * 1000000u, token};
      return timers[i].id;
    }
  return HS_ENOMEM;
}

static int api_timer_stop(hs_ctx *ctx, int64_t id) {
  (void)ctx;
  for (int i = 0; i < MAIN_TIMERS; i++)
    if (id > 0 && timers[i].id == id) {
      timers[i].id = 0;
      return 0;
    }
  return HS_ENOENT;
}

static const char *api_config_get(hs_ctx *ctx, const char *key) {
  (void)ctx;
  for (int i = 0; i < nconf; i++)
    if (strcmp(conf_key[i], key) == 0)
      return conf_val[i];
  return NULL;
}

/* No fd store here: nothing is kept, nothing is handed back. */
static int api_fd_keep(hs_ctx *ctx, int fd, const char *name) {
  (void)ctx, (void)fd, (void)name;
  return 0;
}

static int api_fd_take(hs_ctx *ctx, const char *name) {
  (void)ctx, (void)name;
  return HS_ENOENT;
}

/* ---- the program -------------------------------------------------------- */

/* Reads DIR/NAME.conf: "key = value" lines, '#' comments. */
static void read_conf(const char *dir, const char *name) {
  char path[4096], line[512];
  snprintf(path, sizeof(path), "%s/%s.conf", dir, name);
  FILE *f = fopen(path, "r");
  if (!f)
    return;
  while (nconf < MAIN_CONF_MAX && fgets(line, sizeof(line), f)) {
    char *hash = strchr(line, '#'), *eq = strchr(line, '=');
    if (hash)
      *hash = '\0';
    if (!eq || (hash && eq > hash))
      continue;
    *eq = '\0';
    if (sscanf(line, " %63s", conf_key[nconf]) == 1 &&
        sscanf(eq + 1, " %255s", conf_val[nconf]) == 1)
      nconf++;
  }
  fclose(f);
}

static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

/* Milliseconds until the next timer is due (-1: none), firing those due. */
static int run_timers(hs_ctx *ctx) {
  uint64_t now = mono_ns(), next = UINT64_MAX;
  for (int i = 0; i < MAIN_TIMERS; i++) {
    if (timers[i].id == 0)
      continue;
    if (timers[i].due_ns <= now) {
      uint64_t token = timers[i].token;
      if (timers[i].repeat_ns)
        timers[i].due_ns = now + timers[i].repeat_ns;
      else
        timers[i].id = 0;
      ctx->plugin->on_timer(ctx, ctx->state, token);
    }
    if (timers[i].id != 0 && timers[i].due_ns < next)
      next = timers[i].due_ns;
  }
  if (next == UINT64_MAX)
    return -1;
  now = mono_ns();
  return next <= now ? 0 : (int)((next - now + 999999u) / 1000000u);
}

int main(int argc, char **argv) {
  static hs_api api = {
      .abi_version = HS_ABI_VERSION,
      .size = sizeof(hs_api),
      .log = api_log,
      .name = api_name,
      .dir = api_dir,
      .now_ns = api_now_ns,
      .in_sandbox = api_in_sandbox,
      .tick_start = api_tick_start,
      .tick_stop = api_tick_stop,
      .io_watch = api_io_watch,
      .io_unwatch = api_io_unwatch,
      .io_close = api_io_close,
      .timer_start = api_timer_start,
      .timer_stop = api_timer_stop,
      .config_get = api_config_get,
      .fd_keep = api_fd_keep,
      .fd_take = api_fd_take,
  };
  struct sigaction sa = {.sa_handler = on_signal};
  hs_ctx ctx = {0};
  int rc;

  if (argc != 2) {
    fprintf(stderr, "usage: %s CONF_DIR\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  sigaction(SIGTERM, &sa, NULL); /* no SA_RESTART: epoll_wait returns */
  sigaction(SIGINT, &sa, NULL);
  ctx.dir = argv[1];
  ctx.plugin = hotswap_plugin_entry(&api);
  if (!ctx.plugin || ctx.plugin->abi_version != HS_ABI_VERSION ||
      ctx.plugin->size != sizeof(hs_plugin)) {
    fprintf(stderr, "http_main: the plugin refused or has another ABI\n");
    return 1;
  }
  read_conf(ctx.dir, ctx.plugin->name);
  if ((epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
      !(ctx.state = calloc(1, ctx.plugin->state_size ? ctx.plugin->state_size
                                                     : 1))) {
    perror("http_main");
    return 1;
  }
  if ((rc = ctx.plugin->load(&ctx, ctx.state, HS_LOAD_START)) != 0) {
    fprintf(stderr, "http_main: load failed: %d\n", rc);
    return 1;
  }
  fprintf(stderr, "%s started: version %s, pid %d\n", ctx.plugin->name,
          ctx.plugin->version, (int)getpid());
  while (!stopping) {
    struct epoll_event ev[64];
    int n = epoll_wait(epfd, ev, 64, run_timers(&ctx));
    for (int i = 0; i < n && !stopping; i++) {
      int fd = ev[i].data.fd;
      uint32_t e = (ev[i].events & (EPOLLIN | EPOLLRDHUP) ? HS_IO_READ : 0) |
                   (ev[i].events & EPOLLOUT ? HS_IO_WRITE : 0) |
                   (ev[i].events & (EPOLLHUP | EPOLLERR) ? HS_IO_HUP : 0);
      if (fd >= 0 && fd < MAIN_FDS && watched[fd])
        ctx.plugin->on_io(&ctx, ctx.state, fd, e, tokens[fd]);
    }
  }
  ctx.plugin->unload(&ctx, ctx.state, HS_UNLOAD_SHUTDOWN);
  for (int fd = 0; fd < MAIN_FDS; fd++)
    if (watched[fd])
      close(fd);
  free(ctx.state);
  return 0;
}
