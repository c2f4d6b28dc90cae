/*
 * meter.c - the plugin that changes its state layout. Every 2 seconds it
 * samples a test signal (a sine wave with a 60 s period, computed from the
 * monotonic clock) and keeps running statistics in host-owned state.
 *
 * It comes in two versions from this one file:
 *
 *   version 1.0 (built with -DMETER_V1): state v1, sample count and sum;
 *   version 2.0 (the default):           state v2, which adds min, max and
 *                                        the time of the last sample.
 *
 * Load 1.0, let it take a few samples, then build 2.0 over it: the host sees
 * that the state layout changed and runs 2.0's migrate() to build a v2 state
 * from the live v1 bytes, first on a copy in the sandbox, then for real.
 * With the standalone makefile (docs/plugins.md walks through it):
 *
 *   make -C plugins meter-v1     # version 1.0 into plugins/meter.so
 *   make -C plugins meter.so     # version 2.0 over it: migrate runs
 *
 * Going back (1.0 over 2.0) is rejected: 1.0 has no migrate() and cannot
 * read v2 state, so 2.0 keeps running unless the host was started with
 * --allow-state-reset.
 */
#include <inttypes.h>
#include <stdint.h>

#include "hotswap.h"

#define METER_TICK_MS 2000

/*
 * State v1, the layout of version 1.0. Version 2.0 keeps this definition:
 * migrate() needs it to read the old bytes. A layout, once released, never
 * changes; a new one gets a new struct and a new state_version.
 */
struct meter_state_v1 {
  uint64_t samples; /* samples taken */
  double sum;       /* their sum */
};

/*
 * State v2, the layout of version 2.0. min and max cannot be recovered from
 * a v1 state: v1 never recorded them. Setting both to the mean would be a
 * guess that looks like data, so v2 counts how many samples min and max
 * have seen (ranged); after a migration that is 0, "unknown", and the first
 * new sample sets both. The summary says when they cover fewer samples
 * than the count.
 */
struct meter_state_v2 {
  uint64_t samples; /* samples taken */
  double sum;       /* their sum */
  double min;       /* smallest sample of the last `ranged` ones */
  double max;       /* largest sample of the last `ranged` ones */
  uint64_t ranged;  /* samples min and max have seen; 0: unknown */
  uint64_t last_ns; /* monotonic time of the last sample; 0: none yet */
};

#ifdef METER_V1
#define METER_VERSION "1.0"
#define METER_STATE_VERSION 1
typedef struct meter_state_v1 meter_state;
#else
#define METER_VERSION "2.0"
#define METER_STATE_VERSION 2
typedef struct meter_state_v2 meter_state;
#endif

static const hs_api *api;

/*
 * sin(degrees) in thousandths, with integers only (no libm): Bhaskara I's
 * approximation, sin x = 4x(180 - x) / (40500 - x(180 - x)) for x in
 * [0, 180], mirrored for the second half turn. Exact at 0, 30, 90, 150 and
 * 180 degrees; off by less than 0.003 elsewhere.
 */
static int32_t sin_milli(uint32_t degrees) {
  int32_t x = (int32_t)(degrees % 360), sign = 1;

  if (x >= 180) {
    x -= 180;
    sign = -1;
  }
  int32_t p = x * (180 - x);
  return sign * (4000 * p / (40500 - p));
}

/* The test signal at monotonic time now_ns: a sine wave in [-1, 1] with a
 * period of 60 s, so one degree every 1/6 s. */
static double signal_at(uint64_t now_ns) {
  uint32_t degrees = (uint32_t)(now_ns / 166666667u % 360u);
  return sin_milli(degrees) / 1000.0;
}

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

static double mean(const meter_state *s) {
  return s->samples ? s->sum / (double)s->samples : 0.0;
}

/* Adds one sample taken at now_ns. */
static void meter_record(meter_state *s, double x, uint64_t now_ns) {
  s->samples++;
  s->sum += x;
#ifdef METER_V1
  (void)now_ns;
#else
  if (s->ranged == 0 || x < s->min)
    s->min = x;
  if (s->ranged == 0 || x > s->max)
    s->max = x;
  s->ranged++;
  s->last_ns = now_ns;
#endif
}

/* Logs one line that sums the state up. */
static void meter_report(hs_ctx *ctx, const meter_state *s, double x) {
#ifdef METER_V1
  api->log(ctx, HS_LOG_INFO, "sample %+.3f: n=%" PRIu64 " mean=%+.3f", x,
           s->samples, mean(s));
#else
  if (s->ranged == s->samples)
    api->log(ctx, HS_LOG_INFO,
             "sample %+.3f: n=%" PRIu64 " mean=%+.3f min=%+.3f max=%+.3f", x,
             s->samples, mean(s), s->min, s->max);
  else
    api->log(ctx, HS_LOG_INFO,
             "sample %+.3f: n=%" PRIu64 " mean=%+.3f min=%+.3f max=%+.3f "
             "(min and max cover only the last %" PRIu64 ")",
             x, s->samples, mean(s), s->min, s->max, s->ranged);
#endif
}

static int meter_load(hs_ctx *ctx, void *state, hs_load_reason reason) {
  const meter_state *s = state;

  if (api->in_sandbox(ctx))
    return 0;
  api->log(ctx, HS_LOG_INFO,
           "version %s (%s), state v%d: %" PRIu64 " samples so far, mean "
           "%+.3f",
           METER_VERSION, load_reason_name(reason), METER_STATE_VERSION,
           s->samples, mean(s));
  return api->tick_start(ctx, METER_TICK_MS);
}

static void meter_unload(hs_ctx *ctx, void *state, hs_unload_reason reason) {
  const meter_state *s = state;

  (void)reason;
  if (api->in_sandbox(ctx))
    return;
  api->log(ctx, HS_LOG_INFO, "version %s unloading after %" PRIu64
           " samples", METER_VERSION, s->samples);
}

static void meter_tick(hs_ctx *ctx, void *state) {
  meter_state *s = state;
  uint64_t now = api->now_ns(ctx);
  double x = signal_at(now);

  meter_record(s, x, now);
  meter_report(ctx, s, x);
}

#ifndef METER_V1
/*
 * Builds a v2 state (new_state: zeroed, sizeof(struct meter_state_v2)
 * bytes) from the state of an earlier version. The host calls it only when
 * the live state's version or size differs from ours, so here that means
 * v1; anything else is a layout this code has never seen, and guessing
 * would corrupt the statistics: refuse, and the host keeps the old version
 * running. It runs twice per upgrade, once in the sandbox on a copy and
 * once live, so it logs only in the live host.
 */
static int meter_migrate(hs_ctx *ctx, void *new_state, const void *old_state,
                         uint32_t old_version, uint32_t old_size) {
  struct meter_state_v2 *s = new_state;

  if (old_version != 1 || old_size != sizeof(struct meter_state_v1)) {
    if (!api->in_sandbox(ctx))
      api->log(ctx, HS_LOG_ERROR, "cannot migrate from state v%" PRIu32
               " (%" PRIu32 " bytes)", old_version, old_size);
    return HS_EINVAL;
  }
  const struct meter_state_v1 *old = old_state;
  s->samples = old->samples;
  s->sum = old->sum;
  s->ranged = 0; /* min and max unknown, see struct meter_state_v2 */
  s->last_ns = 0;
  if (!api->in_sandbox(ctx))
    api->log(ctx, HS_LOG_INFO, "migrated state v1 to v2: %" PRIu64
             " samples kept; min and max start with the next sample",
             s->samples);
  return 0;
}
#endif

/*
 * Runs in the sandbox after load(). Checks the signal math at points where
 * the approximation is exact, and (version 2.0) migrate() on a v1 state
 * made by hand.
 */
static int meter_selftest(hs_ctx *ctx, void *state) {
  static const struct {
    uint32_t degrees;
    int32_t milli;
  } known[] = {{0, 0}, {30, 500}, {90, 1000}, {150, 500},
               {210, -500}, {270, -1000}, {360, 0}};

  (void)state;
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
    if (sin_milli(known[i].degrees) != known[i].milli) {
      api->log(ctx, HS_LOG_ERROR, "selftest: sin(%" PRIu32 ") is %" PRId32
               "/1000, expected %" PRId32, known[i].degrees,
               sin_milli(known[i].degrees), known[i].milli);
      return HS_ESELFTEST;
    }
  }
#ifndef METER_V1
  struct meter_state_v1 v1 = {.samples = 4, .sum = 2.0};
  struct meter_state_v2 v2 = {0};
  if (meter_migrate(ctx, &v2, &v1, 1, sizeof(v1)) != 0 || v2.samples != 4 ||
      v2.sum != 2.0 || v2.ranged != 0 || mean(&v2) != 0.5) {
    api->log(ctx, HS_LOG_ERROR, "selftest: migrate from a v1 state is wrong");
    return HS_ESELFTEST;
  }
  if (meter_migrate(ctx, &v2, &v1, 3, sizeof(v1)) != HS_EINVAL) {
    api->log(ctx, HS_LOG_ERROR, "selftest: migrate took state v3");
    return HS_ESELFTEST;
  }
  /* The first sample after a migration sets min and max. */
  meter_record(&v2, -0.25, 1);
  if (v2.min != -0.25 || v2.max != -0.25 || v2.ranged != 1) {
    api->log(ctx, HS_LOG_ERROR, "selftest: min/max after migrate are wrong");
    return HS_ESELFTEST;
  }
#endif
  return 0;
}

static const hs_plugin meter_plugin = {
    .abi_version = HS_ABI_VERSION,
    .size = sizeof(hs_plugin),
    .name = "meter",
    .version = METER_VERSION,
    .state_version = METER_STATE_VERSION,
    .state_size = sizeof(meter_state),
    .load = meter_load,
    .unload = meter_unload,
    .tick = meter_tick,
#ifndef METER_V1
    .migrate = meter_migrate,
#endif
    .selftest = meter_selftest,
};

HS_EXPORT const hs_plugin *hotswap_plugin_entry(const hs_api *host_api) {
  api = host_api;
  return &meter_plugin;
}
