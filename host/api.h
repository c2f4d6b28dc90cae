/*
 * api.h - the hs_api table the host hands to plugins, and hs_ctx, the
 * per-plugin handle passed to every callback. One table serves the live
 * host and the validation sandbox; ctx->sandbox tells them apart.
 */
#ifndef HS_API_H
#define HS_API_H

#include <stdint.h>

#include "hotswap.h"
#include "loop.h"

struct hs_ctx {
  const char *name;       /* plugin name: the file name without ".so" */
  const char *dir;        /* the plugin directory */
  const hs_plugin *desc;  /* descriptor of the version being called */
  void *state;            /* the state bytes callbacks get */
  int sandbox;            /* 1 in the validator, 0 in the live host */
  hs_loop *loop;          /* the live loop; NULL in the sandbox */
  hs_timer tick;          /* tick timer (live only) */
  uint32_t tick_ms;       /* current tick interval; 0 when not ticking */
};

/* Returns the host's table; static, valid for the life of the process. */
const hs_api *hs_api_get(void);

/* Prepares ctx for a plugin; name and dir must outlive ctx. loop is NULL
 * in the sandbox. */
void hs_api_ctx_init(hs_ctx *ctx, const char *name, const char *dir,
                     hs_loop *loop, int sandbox);

/* Stops ctx's tick timer (at unload: ticks never outlive a version). */
void hs_api_ctx_stop(hs_ctx *ctx);

#endif /* HS_API_H */
