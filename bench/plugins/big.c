/*
 * big.c - the benchmarks' large plugin: a 10 MiB constant table (the file
 * is ~10 MB; the table is zeros after its first byte so that the compiler
 * emits it as one ".zero" directive, which keeps the build fast) and
 * 1 MiB of state. Built as big_a and big_b. BP_TABLE_BYTES and
 * BP_STATE_BYTES change the sizes, for experiments.
 */
#include <stdint.h>

#include "hotswap.h"

#ifndef BP_VERSION
#define BP_VERSION "0"
#endif

#ifndef BP_TABLE_BYTES
#define BP_TABLE_BYTES (10u << 20)
#endif
#ifndef BP_STATE_BYTES
#define BP_STATE_BYTES (1u << 20)
#endif

static const unsigned char table[BP_TABLE_BYTES] = {1};
/* Read through a volatile index, so that the table is kept. */
static volatile uint32_t probe_at = BP_TABLE_BYTES - 1;

static const hs_api *api;

static int bp_load(hs_ctx *ctx, void *state, hs_load_reason reason) {
  unsigned char *loads = state; /* a byte: any state size will do */
  if (api->in_sandbox(ctx))
    return 0;
  ++*loads;
  api->log(ctx, HS_LOG_INFO, "load %s version %s",
           reason == HS_LOAD_START ? "start" : "reload", BP_VERSION);
  return 0;
}

static void bp_unload(hs_ctx *ctx, void *state, hs_unload_reason reason) {
  (void)ctx, (void)state, (void)reason;
}

static int bp_selftest(hs_ctx *ctx, void *state) {
  (void)ctx, (void)state;
  return table[0] == 1 && table[probe_at] == 0 ? 0 : HS_ESELFTEST;
}

static const hs_plugin descriptor = {
    .abi_version = HS_ABI_VERSION,
    .size = sizeof(hs_plugin),
    .name = "big",
    .version = BP_VERSION,
    .state_version = 1,
    .state_size = BP_STATE_BYTES,
    .load = bp_load,
    .unload = bp_unload,
    .selftest = bp_selftest,
};

HS_EXPORT const hs_plugin *hotswap_plugin_entry(const hs_api *a) {
  api = a;
  return &descriptor;
}
