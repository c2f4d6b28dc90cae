/*
 * api.h - the hs_api table the host hands to plugins, and hs_ctx, the
 * per-plugin handle passed to every callback. One table serves the live
 * host and the validation sandbox; ctx->sandbox tells them apart.
 */
#ifndef HS_API_H
#define HS_API_H

#include <stdint.h>

#include "config.h"
#include "hotswap.h"
#include "loop.h"
#include "notify.h"

/* The longest name hs_api.fd_keep accepts. */
#define HS_API_FDNAME_MAX 32

/* An fd a plugin watches through hs_api.io_watch (owned by its ctx). */
typedef struct hs_fdreg {
  hs_io io;
  struct hs_ctx *ctx;
  int fd;
  uint32_t events;         /* HS_IO_READ | HS_IO_WRITE, 0 when paused */
  uint64_t token;          /* handed to on_io */
  char name[HS_API_FDNAME_MAX + 1]; /* fd_keep's name ("listen"): in the
                                       fd store as "<plugin>.<name>"; ""
                                       when not kept */
  struct hs_fdreg *next;
} hs_fdreg;

/* A timer a plugin started through hs_api.timer_start. */
typedef struct hs_timerreg {
  hs_timer timer;
  struct hs_ctx *ctx;
  int64_t id;
  uint64_t token;          /* handed to on_timer */
  uint64_t repeat_ms;
  struct hs_timerreg *next;
} hs_timerreg;

struct hs_guard_fault;

struct hs_ctx {
  const char *name;       /* plugin name: the file name without ".so" */
  const char *dir;        /* the plugin directory */
  const hs_plugin *desc;  /* descriptor of the version being called */
  void *state;            /* the state bytes callbacks get */
  int sandbox;            /* 1 in the validator, 0 in the live host */
  hs_loop *loop;          /* the live loop; NULL in the sandbox */
  hs_timer tick;          /* tick timer (live only) */
  uint32_t tick_ms;       /* current tick interval; 0 when not ticking */
  hs_fdreg *fds;          /* watched fds (live only): kept across reloads */
  hs_timerreg *timers;    /* running timers (live only): kept likewise */
  int64_t next_timer_id;
  hs_config config;       /* NAME.conf */
  /* Live only: told when a callback of the live version crashed (guard.h)
   * and the host survived it; NULL: nobody is told. */
  void (*on_crash)(struct hs_ctx *ctx, const struct hs_guard_fault *f);
  void *owner;            /* on_crash's: the registry's slot */
};

/* Returns the host's table; static, valid for the life of the process. */
const hs_api *hs_api_get(void);

/*
 * Gives the live host's fd_keep and fd_take systemd's fd store: n sends
 * the FDSTORE=1 / FDSTOREREMOVE=1 messages and holds the fds inherited at
 * start. n must outlive every live ctx; NULL (the default, and always in
 * the sandbox) makes fd_keep only record the name and fd_take find
 * nothing. Call before the first plugin loads.
 */
void hs_api_set_notify(hs_notify *n);

/* Prepares ctx for a plugin; name and dir must outlive ctx. loop is NULL
 * in the sandbox. */
void hs_api_ctx_init(hs_ctx *ctx, const char *name, const char *dir,
                     hs_loop *loop, int sandbox);

/* Stops ctx's tick timer (at unload: ticks never outlive a version). Fds
 * and timers stay: they outlive versions. */
void hs_api_ctx_stop(hs_ctx *ctx);

/* Closes every fd and stops every timer the plugin registered: the plugin
 * is gone (removed, or its first load failed). Kept fds leave the fd store.
 * The config stays. */
void hs_api_ctx_release(hs_ctx *ctx);

/* Re-arms the watched fds after a version has loaded (events that came
 * while none was live paused them). */
void hs_api_ctx_resume(hs_ctx *ctx);

/*
 * Re-registers, in a host that took over from its previous image (a host
 * upgrade, see upgrade.h), an fd the plugin had watched: same number, same
 * events, token and fd_keep name. It starts paused; hs_api_ctx_resume arms
 * it once the plugin is loaded. Returns 0 or a negative code.
 */
int hs_api_ctx_adopt_fd(hs_ctx *ctx, int fd, uint32_t events, uint64_t token,
                        const char *name);

/* Likewise for a timer: same id and token, due at due_ns (CLOCK_MONOTONIC,
 * at once if past), then every repeat_ms. Returns 0 or HS_ENOMEM. */
int hs_api_ctx_adopt_timer(hs_ctx *ctx, int64_t id, uint64_t token,
                           uint64_t repeat_ms, uint64_t due_ns);

#endif /* HS_API_H */
