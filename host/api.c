/* api.c - the hs_api table handed to plugins, and their hs_ctx. */
#include "api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guard.h"
#include "loader.h"
#include "log.h"

static void api_log(hs_ctx *ctx, hs_log_level level, const char *fmt, ...)
    HS_PRINTF_(3, 4);

static void api_log(hs_ctx *ctx, hs_log_level level, const char *fmt, ...) {
  va_list ap;

  va_start(ap, fmt);
  hs_logv(level, ctx->name, ctx->sandbox ? "sandbox" : "log", fmt, ap);
  va_end(ap);
}

static const char *api_name(hs_ctx *ctx) { return ctx->name; }

static const char *api_dir(hs_ctx *ctx) { return ctx->dir; }

static uint64_t api_now_ns(hs_ctx *ctx) {
  (void)ctx;
  return hs_now_ns();
}

static int api_in_sandbox(hs_ctx *ctx) { return ctx->sandbox; }

static int api_tick_start(hs_ctx *ctx, uint32_t interval_ms) {
  uint64_t ns = (uint64_t)interval_ms * 1000000u;
  int rc;

  if (interval_ms == 0 || ctx->desc == NULL || ctx->desc->tick == NULL)
    return HS_EINVAL;
  /* The sandbox has no loop: it only remembers that ticks were asked for. */
  if (!ctx->sandbox && ctx->loop != NULL) {
    rc = hs_loop_timer_start(ctx->loop, &ctx->tick, ns, ns);
    if (rc != 0)
      return rc;
  }
  ctx->tick_ms = interval_ms;
  return 0;
}

static void api_tick_stop(hs_ctx *ctx) { hs_api_ctx_stop(ctx); }

/* ---- event services (ABI 2) ---- */

static uint32_t to_epoll(uint32_t events) {
  return (events & HS_IO_READ ? EPOLLIN | EPOLLRDHUP : 0) |
         (events & HS_IO_WRITE ? EPOLLOUT : 0);
}

static hs_fdreg *find_fd(hs_ctx *ctx, int fd) {
  for (hs_fdreg *r = ctx->fds; r; r = r->next)
    if (r->fd == fd)
      return r;
  return NULL;
}

/* A watched fd is ready: to the version that is live now. */
/* A callback of ctx's live version crashed and returned to us. */
static void crashed(hs_ctx *ctx, const hs_guard_fault *f) {
  if (ctx->on_crash)
    ctx->on_crash(ctx, f);
}

static void fd_cb(hs_io *io, uint32_t ev) {
  hs_fdreg *r = io->data;
  hs_ctx *ctx = r->ctx;
  const hs_plugin *d = ctx->desc;
  if (!d || !HS_DESC_HAS(d, on_io) || !d->on_io) {
    hs_loop_io_modify(io, 0); /* nobody to tell: pause until a load */
    return;
  }
  uint32_t events = (ev & (EPOLLIN | EPOLLRDHUP) ? HS_IO_READ : 0) |
                    (ev & EPOLLOUT ? HS_IO_WRITE : 0) |
                    (ev & (EPOLLHUP | EPOLLERR) ? HS_IO_HUP | HS_IO_READ : 0);
  hs_guard_fault f;
  if (hs_guard_io(ctx, r->fd, events, r->token, &f) != 0)
    crashed(ctx, &f);
}

/* Registers fd for ctx, watched in the loop for epoll_events; name is its
 * fd_keep name (NULL: none). Returns 0, HS_ENOMEM or -errno. */
static int add_fd(hs_ctx *ctx, int fd, uint32_t events, uint64_t token,
                  uint32_t epoll_events, const char *name) {
  hs_fdreg *r = calloc(1, sizeof(*r));
  if (!r)
    return HS_ENOMEM;
  r->ctx = ctx;
  r->fd = fd;
  r->events = events & (HS_IO_READ | HS_IO_WRITE);
  r->token = token;
  snprintf(r->name, sizeof(r->name), "%s", name ? name : "");
  int rc = hs_loop_io_start(ctx->loop, &r->io, fd, epoll_events, fd_cb, r);
  if (rc != 0) {
    free(r);
    return rc;
  }
  r->next = ctx->fds;
  ctx->fds = r;
  return 0;
}

static int api_io_watch(hs_ctx *ctx, int fd, uint32_t events,
                        uint64_t token) {
  const hs_plugin *d = ctx->desc;
  if (fd < 0 || !d || !HS_DESC_HAS(d, on_io) || !d->on_io)
    return HS_EINVAL;
  if (ctx->sandbox || !ctx->loop)
    return 0;
  hs_fdreg *r = find_fd(ctx, fd);
  if (r) {
    int rc = hs_loop_io_modify(&r->io, to_epoll(events));
    if (rc != 0)
      return rc;
    r->events = events & (HS_IO_READ | HS_IO_WRITE);
    r->token = token;
    return 0;
  }
  return add_fd(ctx, fd, events, token, to_epoll(events), NULL);
}

/* Unlinks fd's registration and returns it (or NULL). */
static hs_fdreg *take_fd(hs_ctx *ctx, int fd) {
  for (hs_fdreg **p = &ctx->fds; *p; p = &(*p)->next)
    if ((*p)->fd == fd) {
      hs_fdreg *r = *p;
      *p = r->next;
      hs_loop_io_stop(&r->io);
      return r;
    }
  return NULL;
}

/* ---- systemd's fd store (ABI 3) ---- */

static hs_notify *fdstore; /* see hs_api_set_notify; NULL: no store */

void hs_api_set_notify(hs_notify *n) { fdstore = n; }

/* 1 if name is 1 to HS_API_FDNAME_MAX of [A-Za-z0-9_-]. */
static int fdname_ok(const char *name) {
  size_t len = name ? strlen(name) : 0;
  if (len == 0 || len > HS_API_FDNAME_MAX)
    return 0;
  return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      "0123456789_-") == len;
}

/* The store's name for the plugin's fd name: "<plugin>.<name>". Returns 0,
 * or HS_EINVAL when the plugin's name makes it one systemd refuses. */
static int store_name(const hs_ctx *ctx, const char *name, char *out,
                      size_t size) {
  int n = snprintf(out, size, "%s.%s", ctx->name, name);
  if (n < 0 || (size_t)n >= size || !hs_notify_fdname_valid(out))
    return HS_EINVAL;
  return 0;
}

/* Takes r out of the store: its fd is closed, or no longer the host's. */
static void unkeep(hs_fdreg *r) {
  char full[HS_NOTIFY_FDNAME_MAX + 1];
  if (r->name[0] && fdstore && store_name(r->ctx, r->name, full,
                                          sizeof(full)) == 0) {
    int rc = hs_notify_unstore(fdstore, full);
    if (rc != 0)
      hs_log(HS_LOG_WARN, r->ctx->name, "warning",
             "cannot take %s out of systemd's fd store: %s", full,
             hs_strerror(rc));
  }
  r->name[0] = '\0';
}

static int api_fd_keep(hs_ctx *ctx, int fd, const char *name) {
  char full[HS_NOTIFY_FDNAME_MAX + 1];
  if (!fdname_ok(name))
    return HS_EINVAL;
  if (ctx->sandbox || !ctx->loop)
    return 0;
  hs_fdreg *r = find_fd(ctx, fd);
  if (!r)
    return HS_EBADF;
  if (strcmp(r->name, name) == 0)
    return 0; /* kept already */
  for (hs_fdreg *o = ctx->fds; o; o = o->next)
    if (o != r && strcmp(o->name, name) == 0)
      return HS_EEXIST;
  unkeep(r);
  snprintf(r->name, sizeof(r->name), "%s", name);
  if (!fdstore || !hs_notify_active(fdstore))
    return 0; /* not run by systemd: only the name is kept */
  int rc = store_name(ctx, name, full, sizeof(full));
  if (rc == 0)
    rc = hs_notify_store(fdstore, full, fd);
  if (rc != 0)
    hs_log(HS_LOG_WARN, ctx->name, "warning",
           "cannot keep fd %d in systemd's fd store as %s.%s: %s", fd,
           ctx->name, name, hs_strerror(rc));
  else
    hs_log(HS_LOG_DEBUG, ctx->name, "fdstore",
           "fd %d kept in systemd's fd store as %s", fd, full);
  return 0;
}

static int api_fd_take(hs_ctx *ctx, const char *name) {
  char full[HS_NOTIFY_FDNAME_MAX + 1];
  if (!fdname_ok(name))
    return HS_EINVAL;
  if (ctx->sandbox || !ctx->loop || !fdstore ||
      store_name(ctx, name, full, sizeof(full)) != 0)
    return HS_ENOENT;
  int fd = hs_notify_take(fdstore, full);
  if (fd >= 0)
    hs_log(HS_LOG_INFO, ctx->name, "fdstore",
           "took %s (fd %d) back from systemd's fd store", full, fd);
  return fd;
}

static int api_io_unwatch(hs_ctx *ctx, int fd) {
  if (ctx->sandbox || !ctx->loop)
    return 0;
  hs_fdreg *r = take_fd(ctx, fd);
  if (r)
    unkeep(r);
  free(r);
  return r ? 0 : HS_ENOENT;
}

static int api_io_close(hs_ctx *ctx, int fd) {
  if (ctx->sandbox || !ctx->loop)
    return 0;
  hs_fdreg *r = take_fd(ctx, fd);
  if (!r)
    return HS_ENOENT;
  unkeep(r);
  close(r->fd);
  free(r);
  return 0;
}

static void timer_cb(hs_timer *t) {
  hs_timerreg *r = t->data;
  hs_ctx *ctx = r->ctx;
  const hs_plugin *d = ctx->desc;
  uint64_t token = r->token;
  if (r->repeat_ms == 0) {
    /* One-shot: gone before the callback, which may start another. */
    for (hs_timerreg **p = &ctx->timers; *p; p = &(*p)->next)
      if (*p == r) {
        *p = r->next;
        break;
      }
    free(r);
  }
  hs_guard_fault f;
  if (d && HS_DESC_HAS(d, on_timer) && d->on_timer &&
      hs_guard_timer(ctx, token, &f) != 0)
    crashed(ctx, &f);
}

static int64_t api_timer_start(hs_ctx *ctx, uint64_t after_ms,
                               uint64_t repeat_ms, uint64_t token) {
  const hs_plugin *d = ctx->desc;
  if (!d || !HS_DESC_HAS(d, on_timer) || !d->on_timer)
    return HS_EINVAL;
  if (ctx->sandbox || !ctx->loop)
    return ++ctx->next_timer_id;
  hs_timerreg *r = calloc(1, sizeof(*r));
  if (!r)
    return HS_ENOMEM;
  r->ctx = ctx;
  r->id = ++ctx->next_timer_id;
  r->token = token;
  r->repeat_ms = repeat_ms;
  hs_loop_timer_init(&r->timer, timer_cb, r);
  if (hs_loop_timer_start(ctx->loop, &r->timer, after_ms * 1000000u,
                          repeat_ms * 1000000u) != 0) {
    free(r);
    return HS_ENOMEM;
  }
  r->next = ctx->timers;
  ctx->timers = r;
  return r->id;
}

static int api_timer_stop(hs_ctx *ctx, int64_t id) {
  if (ctx->sandbox || !ctx->loop)
    return 0;
  for (hs_timerreg **p = &ctx->timers; *p; p = &(*p)->next)
    if ((*p)->id == id) {
      hs_timerreg *r = *p;
      *p = r->next;
      hs_loop_timer_stop(&r->timer);
      free(r);
      return 0;
    }
  return HS_ENOENT;
}

static const char *api_config_get(hs_ctx *ctx, const char *key) {
  return hs_config_get(&ctx->config, key);
}

static const hs_api api = {
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

const hs_api *hs_api_get(void) { return &api; }

static void tick_cb(hs_timer *t) {
  hs_ctx *ctx = t->data;
  hs_guard_fault f;

  if (ctx->desc != NULL && ctx->desc->tick != NULL &&
      hs_guard_tick(ctx, &f) != 0)
    crashed(ctx, &f);
}

void hs_api_ctx_init(hs_ctx *ctx, const char *name, const char *dir,
                     hs_loop *loop, int sandbox) {
  memset(ctx, 0, sizeof(*ctx));
  ctx->name = name;
  ctx->dir = dir;
  ctx->loop = loop;
  ctx->sandbox = sandbox;
  hs_loop_timer_init(&ctx->tick, tick_cb, ctx);
}

void hs_api_ctx_stop(hs_ctx *ctx) {
  hs_loop_timer_stop(&ctx->tick);
  ctx->tick_ms = 0;
}

void hs_api_ctx_release(hs_ctx *ctx) {
  hs_api_ctx_stop(ctx);
  while (ctx->fds) {
    hs_fdreg *r = ctx->fds;
    ctx->fds = r->next;
    hs_loop_io_stop(&r->io);
    unkeep(r);
    close(r->fd);
    free(r);
  }
  while (ctx->timers) {
    hs_timerreg *r = ctx->timers;
    ctx->timers = r->next;
    hs_loop_timer_stop(&r->timer);
    free(r);
  }
}

void hs_api_ctx_resume(hs_ctx *ctx) {
  for (hs_fdreg *r = ctx->fds; r; r = r->next)
    hs_loop_io_modify(&r->io, to_epoll(r->events));
}

int hs_api_ctx_adopt_fd(hs_ctx *ctx, int fd, uint32_t events, uint64_t token,
                        const char *name) {
  /* Paused until a version is live (hs_api_ctx_resume). */
  return add_fd(ctx, fd, events, token, 0, name);
}

int hs_api_ctx_adopt_timer(hs_ctx *ctx, int64_t id, uint64_t token,
                           uint64_t repeat_ms, uint64_t due_ns) {
  hs_timerreg *r = calloc(1, sizeof(*r));
  uint64_t now = hs_now_ns();
  if (!r)
    return HS_ENOMEM;
  r->ctx = ctx;
  r->id = id;
  r->token = token;
  r->repeat_ms = repeat_ms;
  hs_loop_timer_init(&r->timer, timer_cb, r);
  if (hs_loop_timer_start(ctx->loop, &r->timer, due_ns > now ? due_ns - now : 0,
                          repeat_ms * 1000000u) != 0) {
    free(r);
    return HS_ENOMEM;
  }
  r->next = ctx->timers;
  ctx->timers = r;
  if (id > ctx->next_timer_id)
    ctx->next_timer_id = id;
  return 0;
}
