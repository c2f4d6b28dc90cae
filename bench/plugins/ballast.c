/*
 * ballast.c - 100 MiB of state whose every page load() writes in the live
 * host, so that the host holds 100 MiB of touched memory (bench_responsive).
 * Never reload it: a validation copies the live state into a memfd.
 */
#include <stddef.h>
#include <stdint.h>

#include "hotswap.h"

#define BP_BALLAST_BYTES (100u << 20)
#define BP_PAGE 4096u

static const hs_api *api;

static int bp_load(hs_ctx *ctx, void *state, hs_load_reason reason) {
  unsigned char *p = state;
  (void)reason;
  if (api->in_sandbox(ctx))
    return 0;
  for (size_t i = 0; i < BP_BALLAST_BYTES; i += BP_PAGE)
    p[i] = (unsigned char)(i / BP_PAGE) | 1u;
  api->log(ctx, HS_LOG_INFO, "ballast: %u MiB touched", BP_BALLAST_BYTES >> 20);
  return 0;
}

static void bp_unload(hs_ctx *ctx, void *state, hs_unload_reason reason) {
  (void)ctx, (void)state, (void)reason;
}

static const hs_plugin descriptor = {
    .abi_version = HS_ABI_VERSION,
    .size = sizeof(hs_plugin),
    .name = "ballast",
    .version = "1",
    .state_version = 1,
    .state_size = BP_BALLAST_BYTES,
    .load = bp_load,
    .unload = bp_unload,
};

HS_EXPORT const hs_plugin *hotswap_plugin_entry(const hs_api *a) {
  api = a;
  return &descriptor;
}
