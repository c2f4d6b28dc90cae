/*
 * hotswap.h - the plugin ABI of hotswap, the live-reloading plugin host.
 *
 * This is the only header a plugin includes. A plugin is a shared object
 * that exports one symbol, HS_ENTRY_SYMBOL, of type hs_entry_fn. The host
 * calls it with a table of host functions (hs_api) and receives a static
 * descriptor (hs_plugin) that names the plugin, its state and its callbacks.
 * Plugins link against nothing of the host's: everything they need from the
 * host is reached through the hs_api table.
 *
 * Growth rules (see docs/plugins.md):
 *   - Both structs start with an ABI version and their own size; the host
 *     checks them before it reads anything else.
 *   - Members are only ever appended, marked "since ABI n". A changed
 *     signature becomes a new member with a _v2 suffix.
 *   - A plugin built against ABI n loads in every host that speaks ABI >= n.
 *     A plugin that uses a member added in ABI n tests api->abi_version
 *     (or the member for NULL) first.
 */
#ifndef HOTSWAP_H
#define HOTSWAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- identity ---------------------------------------------------------- */

#define HS_ABI_VERSION 3            /* bumped whenever a member is appended */

#define HS_VERSION_MAJOR 0
#define HS_VERSION_MINOR 1
#define HS_VERSION_PATCH 0
#define HS_VERSION_STRING "0.1.0"

/* The one symbol a plugin exports. */
#define HS_ENTRY_SYMBOL "hotswap_plugin_entry"

/* ---- status codes ------------------------------------------------------ */

/*
 * Every function of the ABI returns 0 on success or a negative code. Codes
 * that mirror errno have the value -errno (as in libuv); hotswap's own codes
 * start at -4000. Plugins may return any of these from their callbacks.
 * The host's log prints the name (HS_EABI) and message of each.
 */
#define HS_ERRNO_MAP(X)                                                        \
  X(EPERM, -1, "operation not permitted")                                      \
  X(ENOENT, -2, "no such file or directory")                                   \
  X(EIO, -5, "i/o error")                                                      \
  X(EBADF, -9, "bad file descriptor")                                          \
  X(ENOMEM, -12, "out of memory")                                              \
  X(EACCES, -13, "permission denied")                                          \
  X(EBUSY, -16, "resource busy")                                               \
  X(EEXIST, -17, "already exists")                                             \
  X(EINVAL, -22, "invalid argument")                                           \
  X(ENOSPC, -28, "no space left on device")                                    \
  X(ERANGE, -34, "result out of range")                                        \
  X(ENOSYS, -38, "function not implemented")                                   \
  X(ETIMEDOUT, -110, "timed out")                                              \
  X(ENOTELF, -4001, "not an ELF shared object")                                \
  X(EELFARCH, -4002, "ELF object built for another machine")                   \
  X(ETRUNCATED, -4003, "file is truncated")                                    \
  X(EDLOPEN, -4004, "dynamic loader refused the object")                       \
  X(ENOENTRY, -4005, "entry symbol " HS_ENTRY_SYMBOL " not found")             \
  X(EABI, -4006, "incompatible plugin ABI")                                    \
  X(EDESC, -4007, "invalid plugin descriptor")                                 \
  X(ENOMIGRATE, -4008, "state version changed and no migrate function")        \
  X(EMIGRATE, -4009, "migrate function failed")                                \
  X(ELOAD, -4010, "load callback failed")                                      \
  X(ESELFTEST, -4011, "selftest failed")                                       \
  X(ECRASH, -4012, "plugin crashed")                                           \
  X(ESANDBOX, -4013, "sandbox failed")                                         \
  X(ENOTLOADED, -4014, "plugin is not loaded")                                \
  X(ECOMPILE, -4015, "plugin source failed to compile")                        \
  X(ESTATEPTR, -4016, "state points into the version being replaced")          \
  X(ETHREAD, -4017, "plugin left threads running")                             \
  X(EINSECURE, -4018, "file could be written by other users")

#define HS_ERRNO_ENUM_(name, value, msg) HS_##name = (value),
typedef enum {
  HS_OK = 0,
  HS_ERRNO_MAP(HS_ERRNO_ENUM_)
} hs_status;
#undef HS_ERRNO_ENUM_

/* ---- enums ------------------------------------------------------------- */

/* Why load() is called. */
typedef enum {
  HS_LOAD_START = 1,    /* first load in this host: state is zeroed */
  HS_LOAD_RELOAD = 2,   /* a new version replaces the previous one */
  HS_LOAD_UPGRADE = 3,  /* the host re-executed itself; state carried over */
  HS_LOAD_ROLLBACK = 4  /* a swap failed; this (previous) version returns */
} hs_load_reason;

/* Why unload() is called. */
typedef enum {
  HS_UNLOAD_RELOAD = 1,   /* a new version takes over this state */
  HS_UNLOAD_REMOVED = 2,  /* the plugin's file was deleted */
  HS_UNLOAD_SHUTDOWN = 3, /* the host is exiting */
  HS_UNLOAD_UPGRADE = 4   /* the host is about to re-execute itself */
} hs_unload_reason;

/* Readiness of a watched fd (hs_api.io_watch, hs_plugin.on_io). */
#define HS_IO_READ 1u  /* readable (or the peer closed: a read sees it) */
#define HS_IO_WRITE 2u /* writable */
#define HS_IO_HUP 4u   /* reported only: hang-up or error on the fd */

/* Log levels of hs_api.log. */
typedef enum {
  HS_LOG_DEBUG = 0,
  HS_LOG_INFO = 1,
  HS_LOG_WARN = 2,
  HS_LOG_ERROR = 3
} hs_log_level;

/* ---- types ------------------------------------------------------------- */

/* The host's handle for one plugin; opaque to plugins. */
typedef struct hs_ctx hs_ctx;

#if defined(__GNUC__)
#define HS_PRINTF_(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define HS_PRINTF_(fmt, args)
#endif

/*
 * The host's functions, handed to the entry symbol. The table lives as long
 * as the host; a plugin may keep the pointer in a static variable. Every
 * function takes the ctx the host passed to the callback being run.
 */
typedef struct hs_api {
  uint32_t abi_version; /* HS_ABI_VERSION of the host */
  uint32_t size;        /* sizeof(hs_api) as the host was built */

  /* Writes one log line tagged with the plugin's name. */
  void (*log)(hs_ctx *ctx, hs_log_level level, const char *fmt, ...)
      HS_PRINTF_(3, 4);
  /* The plugin's name (its file name without ".so"); valid while loaded. */
  const char *(*name)(hs_ctx *ctx);
  /* The directory the plugin's file is in; valid while loaded. */
  const char *(*dir)(hs_ctx *ctx);
  /* Monotonic time in nanoseconds (CLOCK_MONOTONIC). */
  uint64_t (*now_ns)(hs_ctx *ctx);
  /* 1 inside the validation sandbox, 0 in the live host. Plugins skip
   * outside effects (binding ports, writing files) when it returns 1. */
  int (*in_sandbox)(hs_ctx *ctx);
  /* Calls the descriptor's tick() every interval_ms milliseconds from now
   * on, replacing any earlier rate. Returns 0, HS_EINVAL for 0 or a plugin
   * without tick(). Ticks stop by themselves at unload. */
  int (*tick_start)(hs_ctx *ctx, uint32_t interval_ms);
  /* Stops the ticks started by tick_start(); harmless when none run. */
  void (*tick_stop)(hs_ctx *ctx);

  /*
   * Since ABI 2: event services. The host owns every registration and keeps
   * it across reloads: the version that is live gets the events of the fds
   * and timers an older one registered (keep the fds, plain integers, in
   * the state). When the plugin is removed the host closes its fds and
   * stops its timers. In the sandbox these do nothing and return 0 (the
   * live fds do not exist there): check in_sandbox() before fd work.
   */
  /* Watches fd for HS_IO_READ and/or HS_IO_WRITE; on_io() gets token with
   * each readiness. On a watched fd, changes events and token; events 0
   * keeps the registration, paused. Returns 0, HS_EINVAL (fd < 0 or no
   * on_io), or -errno from epoll (HS_EPERM for a regular file). */
  int (*io_watch)(hs_ctx *ctx, int fd, uint32_t events, uint64_t token);
  /* Forgets fd's registration; the fd stays open. 0 or HS_ENOENT. */
  int (*io_unwatch)(hs_ctx *ctx, int fd);
  /* Forgets fd's registration and closes fd. 0 or HS_ENOENT (not closed). */
  int (*io_close)(hs_ctx *ctx, int fd);
  /* Starts a timer: on_timer() with token after after_ms, then every
   * repeat_ms unless 0. Returns its id (>= 1), HS_EINVAL (no on_timer) or
   * HS_ENOMEM. */
  int64_t (*timer_start)(hs_ctx *ctx, uint64_t after_ms, uint64_t repeat_ms,
                         uint64_t token);
  /* Stops timer id. 0, or HS_ENOENT (no such timer: a one-shot timer is
   * gone once it fired). */
  int (*timer_stop)(hs_ctx *ctx, int64_t id);
  /* The value of key in the plugin's NAME.conf (lines "key = value", '#'
   * comments), or NULL. Valid until the callback returns. */
  const char *(*config_get)(hs_ctx *ctx, const char *key);

  /*
   * Since ABI 3: systemd's fd store. When the host runs as a systemd
   * service with FileDescriptorStoreMax= > 0, a kept fd survives a crash
   * of the host: systemd holds a duplicate and hands it back to the
   * restarted host, where the plugin takes it instead of opening anew.
   * name: 1 to 32 of [A-Za-z0-9_-]; the store knows it as "<plugin>.<name>".
   */
  /* Keeps fd, which the plugin watches (io_watch), in the fd store under
   * name until it is io_close()d or io_unwatch()ed or the plugin is
   * removed. Returns 0 (also without systemd, and in the sandbox),
   * HS_EINVAL (bad name), HS_EBADF (fd not watched by this plugin) or
   * HS_EEXIST (another fd of the plugin is kept under name). */
  int (*fd_keep)(hs_ctx *ctx, int fd, const char *name);
  /* The fd kept under name that the host inherited from systemd at start
   * (close-on-exec, otherwise as it was kept), handed out once: the
   * caller owns it (io_watch it, fd_keep it again). HS_ENOENT when there
   * is none (always in the sandbox), HS_EINVAL for a bad name. Inherited
   * fds nobody takes by the time the first scan's plugins are loaded are
   * closed. */
  int (*fd_take)(hs_ctx *ctx, const char *name);
} hs_api;

/*
 * The plugin's descriptor, returned by the entry symbol. It must stay valid
 * while the plugin is loaded: make it a static const object.
 *
 * State: the host owns state_size bytes for the plugin, zeroed at the first
 * load, and passes them to every callback. They survive every reload. The
 * state must be plain data: no pointers (into the plugin or the heap), since
 * the code and data they point at are gone after a reload. When a new
 * version has the same state_version and state_size, it gets the same bytes;
 * otherwise its migrate() builds the new state from the old.
 */
typedef struct hs_plugin {
  uint32_t abi_version;   /* HS_ABI_VERSION the plugin was built against */
  uint32_t size;          /* sizeof(hs_plugin) the plugin was built with */
  const char *name;       /* short name, for humans and the log */
  const char *version;    /* human version string, e.g. "1.4.2" */
  uint32_t state_version; /* layout version of the state struct, >= 1 */
  uint32_t state_size;    /* bytes of state the host keeps; 0 for none */

  /* Required. Starts the plugin on its state. Returns 0 or a negative
   * code; on failure the host unloads this version without unload(). */
  int (*load)(hs_ctx *ctx, void *state, hs_load_reason reason);
  /* Required. Stops the plugin; the state stays with the host. */
  void (*unload)(hs_ctx *ctx, void *state, hs_unload_reason reason);
  /* Optional. Called at the rate set with hs_api.tick_start(). */
  void (*tick)(hs_ctx *ctx, void *state);
  /* Optional. Fills new_state (state_size zeroed bytes) from the state of
   * a previous version: old_size bytes of layout old_version. Called when
   * state_version or state_size differ. Returns 0 or a negative code. */
  int (*migrate)(hs_ctx *ctx, void *new_state, const void *old_state,
                 uint32_t old_version, uint32_t old_size);
  /* Optional. Run only in the validation sandbox, after load(). Returns 0
   * if this version works, a negative code if it must not be swapped in. */
  int (*selftest)(hs_ctx *ctx, void *state);

  /* Since ABI 2. Optional: a watched fd is ready (events: HS_IO_*). */
  void (*on_io)(hs_ctx *ctx, void *state, int fd, uint32_t events,
                uint64_t token);
  /* Since ABI 2. Optional: a timer fired. */
  void (*on_timer)(hs_ctx *ctx, void *state, uint64_t token);
  /* Since ABI 2. Optional: NAME.conf changed (appeared, went away).
   * Without it, a change of NAME.conf reloads the plugin. */
  void (*on_config)(hs_ctx *ctx, void *state);
} hs_plugin;

/* The type of the entry symbol. Returns the descriptor, or NULL to refuse. */
typedef const hs_plugin *hs_entry_fn(const hs_api *api);

/* Marks the entry symbol for export from a library built with
 * -fvisibility=hidden. Use as: HS_EXPORT const hs_plugin *
 * hotswap_plugin_entry(const hs_api *api) { ... } */
#if defined(__GNUC__)
#define HS_EXPORT __attribute__((visibility("default")))
#else
#define HS_EXPORT
#endif

/* The entry symbol's declaration, so that plugins define it with a
 * prototype in scope. The host never defines it. */
HS_EXPORT hs_entry_fn hotswap_plugin_entry;

#ifdef __cplusplus
}
#endif

#endif /* HOTSWAP_H */
