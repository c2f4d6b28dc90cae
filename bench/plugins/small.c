/*
 * small.c - the benchmarks' small plugin: 16 bytes of state, a load() that
 * logs "load <reason> version <v>" (the line bench_latency waits for), no
 * other output. Built as small_a, small_b (two versions to alternate) and
 * small_tick (BP_TICK_MS: a silent tick at that period).
 */
#include <stdint.h>

#include "hotswap.h"

#ifndef BP_VERSION
#define BP_VERSION "0"
#endif

typedef struct bp_state {
  uint64_t loads; /* load() calls in the live host */
  uint64_t ticks; /* tick() calls */
} bp_state;

static const hs_api *api;

static const char *reason_name(hs_load_reason r) {
  switch (r) {
  case HS_LOAD_START:
    return "start";
  case HS_LOAD_RELOAD:
    return "reload";
  case HS_LOAD_UPGRADE:
    return "upgrade";
  case HS_LOAD_ROLLBACK:
    return "rollback";
  }
  return "?";
}

static int bp_load(hs_ctx *ctx, void *state, hs_load_reason reason) {
  bp_state *s = state;
  if (api->in_sandbox(ctx))
    return 0;
  s->loads++;
  api->log(ctx, HS_LOG_INFO, "load %s version %s", reason_name(reason),
           BP_VERSION);
#ifdef BP_TICK_MS
  return api->tick_start(ctx, BP_TICK_MS);
#else
  return 0;
#endif
}

static void bp_unload(hs_ctx *ctx, void *state, hs_unload_reason reason) {
  (void)ctx, (void)state, (void)reason;
}

static void bp_tick(hs_ctx *ctx, void *state) {
  bp_state *s = state;
  (void)ctx;
  s->ticks++;
}

static int bp_selftest(hs_ctx *ctx, void *state) {
  (void)ctx, (void)state;
  return 0;
}

static const hs_plugin descriptor = {
    .abi_version = HS_ABI_VERSION,
    .size = sizeof(hs_plugin),
    .name = "small",
    .version = BP_VERSION,
    .state_version = 1,
    .state_size = sizeof(bp_state),
    .load = bp_load,
    .unload = bp_unload,
    .tick = bp_tick,
    .selftest = bp_selftest,
};

HS_EXPORT const hs_plugin *hotswap_plugin_entry(const hs_api *a) {
  api = a;
  return &descriptor;
}
