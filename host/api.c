/* api.c - the hs_api table handed to plugins, and their hs_ctx. */
#include "api.h"

#include <stdarg.h>
#include <string.h>

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
};

const hs_api *hs_api_get(void) { return &api; }

static void tick_cb(hs_timer *t) {
  hs_ctx *ctx = t->data;

  if (ctx->desc != NULL && ctx->desc->tick != NULL)
    ctx->desc->tick(ctx, ctx->state);
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
