/*
 * registry.h - the plugins of one directory and the pipeline each change
 * goes through: copy into the cache (by content hash: unchanged content
 * stops here) -> validate in the sandbox -> open the copy on the worker
 * thread -> swap in the loop.
 *
 * One slot per plugin name. A slot keeps the live version (if any), the
 * state, the last error and the last reload's timings. A change that
 * arrives while a slot's candidate is being validated is remembered and
 * tried once the current one is done, so the newest content always wins.
 */
#ifndef HS_REGISTRY_H
#define HS_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "build.h"
#include "cache.h"
#include "crash.h"
#include "err.h"
#include "handoff.h"
#include "loader.h"
#include "log.h"
#include "loop.h"
#include "sandbox.h"
#include "state.h"
#include "threads.h"
#include "worker.h"

typedef struct hs_registry hs_registry;

#define HS_QUEUED_READY 2 /* hs_slot.queued: the candidate waits, copied */
typedef struct hs_slot hs_slot;

/* Called once when a forced reload (hs_registry_reload) is over: err code
 * 0 when the new version is live. */
typedef void (*hs_reload_cb)(hs_slot *slot, const hs_error *err, void *data);

/* Timings of one reload, each from the change's detection. */
typedef struct hs_timings {
  uint64_t validated_ns;  /* detection -> sandbox verdict */
  uint64_t swapped_ns;    /* detection -> new version live */
  uint64_t pause_ns;      /* how long the loop was blocked by the swap */
} hs_timings;

struct hs_slot {
  hs_ctx ctx;              /* handed to the plugin's callbacks */
  hs_registry *reg;
  char *name;              /* owned: file name without ".so" */
  char *file;              /* owned: file name in the plugin directory */

  /* the live version */
  int loaded;              /* 1 while a version is live */
  int detached;            /* unloaded for a host upgrade (hs_swap_detach) */
  hs_image img;            /* its image */
  hs_cache_file copy;      /* its cache copy */
  hs_imagemap map;         /* its ranges, for the validator's pointer scan */
  char *map_path;          /* owned: the copy map describes, or NULL */
  char version[128];       /* its version string */
  uint32_t generation;     /* versions loaded so far (1 after first load) */
  uint32_t reloads;        /* successful reloads (generation - 1, or more
                              after unload/load) */
  int64_t loaded_at;       /* wall clock (s since epoch) of the live load */
  hs_state state;          /* the state the host owns */
  hs_state_snap snap;      /* its snapshots for the validators */

  /* the pipeline */
  hs_sandbox *sb;          /* validation under way, or NULL */
  hs_open_job *opening;    /* the worker opening the accepted copy */
  hs_open_job *copying;    /* the worker copying the file into the cache */
  int copy_force;          /* that copy is for a forced reload */
  hs_cache_file candidate; /* the copy being validated */
  uint64_t detect_ns;      /* when the change being handled was seen */
  int again;               /* a change arrived during validation */
  int force;               /* the next run reloads even unchanged content */
  int queued;              /* waiting for a free validator: 1 to start
                              over, HS_QUEUED_READY with the candidate
                              copied */
  uint64_t rejected_hash;  /* content last rejected; not retried unchanged */
  hs_reload_cb done_cb;    /* forced reload waiting for its outcome */
  void *done_data;

  /* plugins from source (NAME.c, see build.h) */
  int source;              /* 1: the host builds it from NAME.c or NAME/ */
  int is_dir;              /* built from the directory NAME/ */
  int compiling;           /* sb is a compile, not a validation */
  hs_build build;          /* its outputs and header dependencies */
  uint64_t build_key;      /* inputs of the live version */
  uint64_t cand_key;       /* inputs of the candidate under way */
  char cand_out[64];       /* the compile's output name in the cache */

  hs_error last_error;     /* code 0 if the last attempt succeeded */
  hs_timings last;         /* of the last successful reload */
  hs_crash crash;          /* crashes: the version kept for a rollback,
                              quarantine, the last crash (crash.h) */

  /* what makes unloading unsafe (threads.h, imagemap.h) */
  hs_threads threads;      /* thread ids before the live version's load() */
  hs_threads born;         /* the threads that load() started */
  uint64_t leaked_bytes;   /* old versions still mapped: pinned, or kept
                              for threads they left running */
  uint32_t leaked_images;  /* how many */
};

typedef struct hs_registry_opts {
  int allow_state_reset;       /* --allow-state-reset */
  hs_sandbox_limits limits;    /* for every validation */
  hs_log_format log_format;    /* handed to the validators */
  hs_log_level log_level;
  int color;                   /* compiler diagnostics in colour */
  int plugin_werror;           /* --plugin-werror: warnings block */
  int allow_insecure;          /* --allow-insecure: no hs_perm_check */
  hs_sandbox_limits build_limits; /* for compilers */
  int lazy_pool;               /* start the validators at their first use */
  uint32_t crash_grace_ms;     /* --crash-grace: a crash this soon after a
                                  reload rolls back; 0: never (crash.h) */
  uint32_t crash_limit;        /* --crash-limit: crashes in
                                  HS_CRASH_WINDOW_S that make a crash loop;
                                  0: no bound */
} hs_registry_opts;

/* Called when the pipeline has nothing under way (see hs_registry_idle). */
typedef void (*hs_idle_cb)(hs_registry *reg, void *data);

struct hs_registry {
  hs_loop *loop;
  hs_idle_cb idle_cb;          /* see hs_registry_on_idle */
  void *idle_data;
  hs_cache *cache;
  hs_worker worker;            /* opens and closes images off the loop */
  hs_worker copier;            /* copies changed files into the cache */
  hs_sandbox_pool *pool;       /* validates candidates */
  char *dir;                   /* owned copy of the plugin directory */
  int dirfd;                   /* O_DIRECTORY fd of dir */
  hs_registry_opts opts;
  hs_slot **slots;             /* owned; in order of arrival */
  size_t nslots, capslots;
  unsigned running;            /* validations under way */
  unsigned max_running;        /* at most this many at once (2 per core) */
  unsigned compiling;          /* compiles under way */
  unsigned max_compiling;      /* at most one per core */
  hs_build_env build_env;      /* how sources are compiled */
  int can_build;               /* build_env is set (hotswap.h was found) */
  uint64_t leaked_bytes;       /* hs_slot.leaked_bytes of every plugin,
                                  also of those gone since */
  int64_t started_at;          /* wall clock (s) at init */
  uint64_t started_ns;         /* monotonic at init */
};

/* Opens dir for a registry; unless opts->allow_insecure, dir must pass
 * hs_perm_check (else HS_EINSECURE, stage "scan"). Returns 0 or a negative
 * code with err filled. */
int hs_registry_init(hs_registry *reg, hs_loop *loop, hs_cache *cache,
                     const char *dir, const hs_registry_opts *opts,
                     hs_error *err);

/* Unloads every plugin with reason, cancels validations, frees all. */
void hs_registry_close(hs_registry *reg, hs_unload_reason reason);

/* Runs every plugin file in the directory ("*.so", "*.c") through the
 * pipeline (new ones load, changed ones reload, vanished ones unload). At
 * start and on SIGHUP. A NAME.c takes precedence over a NAME.so. */
void hs_registry_scan(hs_registry *reg);

/* The watcher saw file change or vanish: a plugin ("*.so", "*.c"), a
 * source plugin's "NAME.flags", or a header that source plugins include.
 * Other files are ignored. */
void hs_registry_changed(hs_registry *reg, const char *file);
void hs_registry_removed(hs_registry *reg, const char *file);

/* Finds a slot by plugin name; NULL if none. */
hs_slot *hs_registry_find(hs_registry *reg, const char *name);

/* Reloads name even if its content is unchanged; cb runs once with the
 * outcome (possibly before this returns). Returns 0, or HS_ENOENT if no
 * such plugin (cb not called). */
int hs_registry_reload(hs_registry *reg, const char *name, hs_reload_cb cb,
                       void *data);

/* Returns 1 if nothing is under way: no compile, validation, open or
 * waiting change in any slot. */
int hs_registry_idle(const hs_registry *reg);

/* Calls cb each time the pipeline becomes idle after work (and once after
 * hs_registry_scan finds nothing to do): for "ready" notifications. */
void hs_registry_on_idle(hs_registry *reg, hs_idle_cb cb, void *data);

/* An old version of plugin name stays mapped with bytes of memory (it
 * pins itself, or threads it left run its code): counted for its slot, if
 * any, and for the host. Returns the plugin's total so far. */
uint64_t hs_registry_leaked(hs_registry *reg, const char *name,
                            uint64_t bytes);

/* Counts the plugins that are live and those whose last attempt failed. */
void hs_registry_count(const hs_registry *reg, unsigned *live,
                       unsigned *failed);

/* ---- host upgrade (upgrade.h) ---- */

/* The highest plugin ABI a live plugin was built for (0 if none). */
uint32_t hs_registry_max_abi(const hs_registry *reg);

/* Before a re-exec: unloads every live plugin with reason UPGRADE, keeping
 * images, states, fds and timers, and stops the validators. Call only
 * when hs_registry_idle. */
void hs_registry_suspend(hs_registry *reg);

/* The re-exec failed: loads every suspended plugin again on its state
 * (reason ROLLBACK) and restarts the validators. Returns 0, or a negative
 * code with err filled if the validators cannot restart. */
int hs_registry_resume(hs_registry *reg, hs_error *err);

/* Fills ho's slots (borrowing the registry's strings and state bytes: use
 * ho only while reg is unchanged; hs_handoff_free frees the arrays).
 * Returns 0 or HS_ENOMEM. */
int hs_registry_save(const hs_registry *reg, hs_handoff *ho);

/* In the new image: takes every plugin of ho over (ho's states are moved
 * out): fds and timers registered again, each live version opened from its
 * cache copy and loaded with reason UPGRADE on its state. A plugin that
 * cannot be is logged and left not running with its state kept; the scan
 * that follows (hs_registry_scan) handles files changed meanwhile. */
void hs_registry_adopt(hs_registry *reg, hs_handoff *ho);

#endif /* HS_REGISTRY_H */
