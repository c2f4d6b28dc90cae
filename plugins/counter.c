/*
 * counter.c - the first plugin to read. It counts once a second and keeps
 * counting across reloads: the count lives in state the host owns, not in
 * this file's variables, so a new version picks it up where the old one
 * left it.
 *
 * Try it (from the top of the repository):
 *
 *   ./dev run                  # builds the host, runs it on plugins/
 *
 * The host compiles this file itself and logs "count 1", "count 2"... Then,
 * in a second terminal, edit COUNTER_STEP or COUNTER_VERSION below and save.
 * The host sees the change, compiles the file in its sandbox, tries the new
 * version there, swaps it in, and the count continues from where it was,
 * now with the new step. (A hand-built counter.so is used only where no
 * counter.c is beside it: make -C plugins or cmake --build build write one.)
 *
 * Set COUNTER_STEP to 0 and save to watch a version be rejected: its
 * selftest fails in the sandbox and the running version keeps counting.
 *
 * docs/plugins.md explains every rule this file follows.
 */
#include <inttypes.h>
#include <stdint.h>

#include "hotswap.h"

/* ---- edit these, save, and watch the host swap the new code in ------- */
#define COUNTER_STEP 1        /* how much the count grows each tick */
#define COUNTER_VERSION "1.0" /* shown in the log and in hotswap status */
/* ----------------------------------------------------------------------- */

#define COUNTER_TICK_MS 1000

/*
 * The state: plain data only. The host keeps these bytes, zeroed at the
 * first load, and hands the same bytes to every later version with the same
 * state_version and size. Never put a pointer here (not to a string, not
 * to a static, not to malloc'd memory): after a reload, the old version's
 * code and data are unmapped. Changing this struct means a new
 * state_version and a migrate() function; see meter.c.
 */
typedef struct counter_state {
  uint64_t count; /* the number the plugin counts up */
  uint64_t loads; /* live loads so far, across all versions */
} counter_state;

/* The host's function table. It outlives every version of the plugin, so a
 * static pointer to it is fine; each new version sets its own. */
static const hs_api *api;

/* The next value of the count. Kept apart so that selftest() can check it. */
static uint64_t next_count(uint64_t count) { return count + COUNTER_STEP; }

static const char *load_reason_name(hs_load_reason reason) {
  switch (reason) {
  case HS_LOAD_START:
    return "start";
  case HS_LOAD_RELOAD:
    return "reload";
  case HS_LOAD_UPGRADE:
    return "upgrade";
  case HS_LOAD_ROLLBACK:
    return "rollback";
  }
  return "unknown reason";
}

static const char *unload_reason_name(hs_unload_reason reason) {
  switch (reason) {
  case HS_UNLOAD_RELOAD:
    return "reload";
  case HS_UNLOAD_REMOVED:
    return "file removed";
  case HS_UNLOAD_SHUTDOWN:
    return "shutdown";
  case HS_UNLOAD_UPGRADE:
    return "host upgrade";
  }
  return "unknown reason";
}

/*
 * Runs at every load: the first one (state zeroed), each reload (the state
 * as the previous version left it), and in the sandbox, where the host
 * tries this version on a copy of the state before it goes live. Outside
 * effects belong to the live host only: the sandbox gets no ticks.
 */
static int counter_load(hs_ctx *ctx, void *state, hs_load_reason reason) {
  counter_state *s = state;

  if (api->in_sandbox(ctx))
    return 0;
  s->loads++;
  if (reason == HS_LOAD_START)
    api->log(ctx, HS_LOG_INFO, "version %s (%s): counting from %" PRIu64
             " by %d", COUNTER_VERSION, load_reason_name(reason), s->count,
             COUNTER_STEP);
  else
    api->log(ctx, HS_LOG_INFO, "version %s (%s): resuming at count %" PRIu64
             " by %d, load %" PRIu64, COUNTER_VERSION,
             load_reason_name(reason), s->count, COUNTER_STEP, s->loads);
  /* Ticks stop by themselves at unload: every load starts its own. */
  return api->tick_start(ctx, COUNTER_TICK_MS);
}

/* Runs before the next version takes over, when the file is deleted and
 * when the host exits. The state stays with the host; nothing to free. */
static void counter_unload(hs_ctx *ctx, void *state, hs_unload_reason reason) {
  counter_state *s = state;

  if (api->in_sandbox(ctx))
    return;
  api->log(ctx, HS_LOG_INFO, "version %s unloading (%s) at count %" PRIu64,
           COUNTER_VERSION, unload_reason_name(reason), s->count);
}

static void counter_tick(hs_ctx *ctx, void *state) {
  counter_state *s = state;

  s->count = next_count(s->count);
  api->log(ctx, HS_LOG_INFO, "count %" PRIu64, s->count);
}

/*
 * Runs only in the sandbox, after load(). A non-zero return rejects this
 * version before it touches the live count. Here: the count must move
 * forward, from zero and from where the live count is now.
 */
static int counter_selftest(hs_ctx *ctx, void *state) {
  const counter_state *s = state;

  if (next_count(0) == 0 || next_count(s->count) <= s->count) {
    api->log(ctx, HS_LOG_ERROR, "selftest: a step of %d does not move the "
             "count forward", COUNTER_STEP);
    return HS_ESELFTEST;
  }
  return 0;
}

/* What the host reads first: static const, so it lives as long as the
 * image. The fields not named here (migrate) are NULL: optional. */
static const hs_plugin counter_plugin = {
    .abi_version = HS_ABI_VERSION,
    .size = sizeof(hs_plugin),
    .name = "counter",
    .version = COUNTER_VERSION,
    .state_version = 1,
    .state_size = sizeof(counter_state),
    .load = counter_load,
    .unload = counter_unload,
    .tick = counter_tick,
    .selftest = counter_selftest,
};

/* The one exported symbol. Everything else in this file is static and,
 * with -fvisibility=hidden, invisible outside the .so. */
HS_EXPORT const hs_plugin *hotswap_plugin_entry(const hs_api *host_api) {
  api = host_api;
  return &counter_plugin;
}
