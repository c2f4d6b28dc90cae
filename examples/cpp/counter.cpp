/*
 * counter.cpp - the counter plugin in C++17. It counts once a second and
 * keeps counting across reloads, like plugins/counter.c, and follows the
 * rules that keep a C++ library unloadable (README.md in this directory):
 *
 *   - the host sees only the C ABI of hotswap.h: one extern "C" entry,
 *     callbacks of C language linkage, plain-data state;
 *   - no exception ever crosses into the host: every callback is noexcept
 *     and turns what its body throws into an error code and a log line;
 *   - built with -fvisibility=hidden and -fno-gnu-unique, no thread_local
 *     object with a destructor, never -z nodelete: after a reload the old
 *     version is unmapped, as a C plugin's is.
 *
 * Build it with CMake (cmake --build build -> build/examples/plugins/) or
 * by hand, from the top of the repository:
 *
 *   c++ -std=c++17 -O2 -g -fPIC -shared -fvisibility=hidden \
 *       -fno-gnu-unique -Iinclude -o .cpp_counter.so.tmp \
 *       examples/cpp/counter.cpp && mv .cpp_counter.so.tmp DIR/cpp_counter.so
 *
 * and run ./build/hotswap DIR. Change CPP_COUNTER_STEP or _VERSION,
 * rebuild, and the count goes on with the new code.
 */

/* hotswap.h is a C header. Included inside extern "C", its entry symbol
 * and its function pointer types get C language linkage, so that the
 * definitions below match it. */
extern "C" {
#include "hotswap.h"
}

#include <cstdint>
#include <exception>
#include <string>
#include <type_traits>

/* ---- edit these, rebuild, and watch the host swap the new code in ---- */
#ifndef CPP_COUNTER_STEP
#define CPP_COUNTER_STEP 1 /* how much the count grows each tick */
#endif
#ifndef CPP_COUNTER_VERSION
#define CPP_COUNTER_VERSION "1.0" /* shown in the log and in status */
#endif
/* ----------------------------------------------------------------------- */

#ifndef CPP_COUNTER_TICK_MS
#define CPP_COUNTER_TICK_MS 1000
#endif

namespace {

/*
 * The state the host keeps across versions: plain data only. Standard
 * layout, so its bytes mean the same to every version built with the same
 * compiler rules; trivially copyable, so handing the bytes over is a copy.
 * No pointers, no std::string, no virtual functions: after a reload the old
 * version's code, vtables and heap bookkeeping are gone.
 */
struct counter_state {
  std::uint64_t count; /* the number the plugin counts up */
  std::uint64_t loads; /* live loads so far, across all versions */
};
static_assert(std::is_standard_layout_v<counter_state>,
              "the state must be standard-layout");
static_assert(std::is_trivially_copyable_v<counter_state>,
              "the state must be plain data");

/* The host's function table; it outlives every version. */
const hs_api *api;

/* A static object with a destructor is fine: its destructor is registered
 * with __cxa_atexit against this library and runs at dlclose. */
const std::string version_text = "version " CPP_COUNTER_VERSION;

/* Hands a C++ string to the host's printf-style log: always through "%s",
 * so that a '%' in the text is never read as a conversion. */
void say(hs_ctx *ctx, hs_log_level level, const std::string &msg) {
  api->log(ctx, level, "%s", msg.c_str());
}

/*
 * Runs body() and returns what it returns. An exception must not unwind
 * into the host: its C code neither catches nor cleans up, so the host
 * would die or lose its bookkeeping. Anything thrown becomes a log line and
 * HS_EINVAL here, at the border.
 */
template <typename Body>
int guarded(hs_ctx *ctx, const char *where, Body body) noexcept {
  try {
    return body();
  } catch (const std::exception &e) {
    api->log(ctx, HS_LOG_ERROR, "%s: %s", where, e.what());
  } catch (...) {
    api->log(ctx, HS_LOG_ERROR, "%s: unknown exception", where);
  }
  return HS_EINVAL;
}

counter_state &state_of(void *state) {
  return *static_cast<counter_state *>(state);
}

std::uint64_t next_count(std::uint64_t count) {
  return count + CPP_COUNTER_STEP;
}

const char *load_reason_name(hs_load_reason reason) {
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

const char *unload_reason_name(hs_unload_reason reason) {
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

} // namespace

/* The callbacks have C language linkage, as the descriptor's pointer types
 * do; static keeps them out of the symbol table all the same. */
extern "C" {

static int cpp_counter_load(hs_ctx *ctx, void *state,
                            hs_load_reason reason) noexcept {
  return guarded(ctx, "load", [&] {
    counter_state &s = state_of(state);
    if (api->in_sandbox(ctx))
      return 0;
    s.loads++;
    if (reason == HS_LOAD_START)
      say(ctx, HS_LOG_INFO,
          version_text + " (" + load_reason_name(reason) +
              "): counting from " + std::to_string(s.count) + " by " +
              std::to_string(CPP_COUNTER_STEP));
    else
      say(ctx, HS_LOG_INFO,
          version_text + " (" + load_reason_name(reason) +
              "): resuming at count " + std::to_string(s.count) + " by " +
              std::to_string(CPP_COUNTER_STEP) + ", load " +
              std::to_string(s.loads));
    return api->tick_start(ctx, CPP_COUNTER_TICK_MS);
  });
}

static void cpp_counter_unload(hs_ctx *ctx, void *state,
                               hs_unload_reason reason) noexcept {
  guarded(ctx, "unload", [&] {
    if (!api->in_sandbox(ctx))
      say(ctx, HS_LOG_INFO,
          version_text + " unloading (" + unload_reason_name(reason) +
              ") at count " + std::to_string(state_of(state).count));
    return 0;
  });
}

static void cpp_counter_tick(hs_ctx *ctx, void *state) noexcept {
  guarded(ctx, "tick", [&] {
    counter_state &s = state_of(state);
    s.count = next_count(s.count);
    say(ctx, HS_LOG_INFO, "count " + std::to_string(s.count));
    return 0;
  });
}

static int cpp_counter_selftest(hs_ctx *ctx, void *state) noexcept {
  return guarded(ctx, "selftest", [&] {
    const counter_state &s = state_of(state);
    if (next_count(0) == 0 || next_count(s.count) <= s.count) {
      say(ctx, HS_LOG_ERROR,
          "selftest: a step of " + std::to_string(CPP_COUNTER_STEP) +
              " does not move the count forward");
      return static_cast<int>(HS_ESELFTEST);
    }
    return 0;
  });
}

} // extern "C"

namespace {

/* C++17 has no designated initializers: the descriptor is filled member by
 * member in a constexpr function, so that it is still constant data. */
constexpr hs_plugin make_descriptor() {
  hs_plugin d{};
  d.abi_version = HS_ABI_VERSION;
  d.size = sizeof(hs_plugin);
  d.name = "cpp_counter";
  d.version = CPP_COUNTER_VERSION;
  d.state_version = 1;
  d.state_size = sizeof(counter_state);
  d.load = cpp_counter_load;
  d.unload = cpp_counter_unload;
  d.tick = cpp_counter_tick;
  d.selftest = cpp_counter_selftest;
  return d;
}

constexpr hs_plugin descriptor = make_descriptor();

} // namespace

/* The one exported symbol, with C linkage: no mangled name. */
extern "C" HS_EXPORT const hs_plugin *
hotswap_plugin_entry(const hs_api *host_api) {
  api = host_api;
  return &descriptor;
}
