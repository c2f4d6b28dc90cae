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

/* An fd a plugin watches through hs_api.io_watch (owned by its ctx). */
typedef struct hs_fdreg {
  hs_io io;
  struct hs_ctx *ctx;
  int fd;
  uint32_t events;         /* HS_IO_READ | HS_IO_WRITE, 0 when paused */
  uint64_t token;          /* handed to on_io */
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
};

/* Returns the host's table; static, valid for the life of the process. */
const hs_api *hs_api_get(void);

/* Prepares ctx for a plugin; name and dir must outlive ctx. loop is NULL
 * in the sandbox. */
void hs_api_ctx_init(hs_ctx *ctx, const char *name, const char *dir,
                     hs_loop *loop, int sandbox);

/* Stops ctx's tick timer (at unload: ticks never outlive a version). Fds
 * and timers stay: they outlive versions. */
void hs_api_ctx_stop(hs_ctx *ctx);

/* Closes every fd and stops every timer the plugin registered: the plugin
 * is gone (removed, or its first load failed). The config stays. */
void hs_api_ctx_release(hs_ctx *ctx);

/* Re-arms the watched fds after a version has loaded (events that came
 * while none was live paused them). */
void hs_api_ctx_resume(hs_ctx *ctx);

#endif /* HS_API_H */
