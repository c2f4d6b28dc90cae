/*
 * crash.h - what the host does when the live version of a plugin crashes
 * (guard.h turns the crash into a return to the host): roll back, or
 * quarantine, with a bound on crash loops.
 *
 * After a reload, the version it replaced stays open for the grace period
 * (hs_registry_opts.crash_grace_ms), with its cache copy (what gdb and core
 * dumps read) and the exact state bytes it handed over. When the period
 * ends, the worker closes it and removes the copy.
 *
 *  - Rollback: a callback of the new version crashes within the grace
 *    period. The new version is dropped without its unload() (its code
 *    just crashed); the previous version and the saved bytes come back and
 *    its load() runs with HS_LOAD_ROLLBACK. The new content is marked bad:
 *    it is not tried again until the file changes (or a forced reload).
 *  - Quarantine: any other crash, or a rollback whose load() fails. The
 *    version is dropped without unload(); the plugin is not running. Its
 *    state (as the crash left it), fds and timers are kept, as when a
 *    reload fails: fd events pause the fd until a version is live, timer
 *    expiries find no callback and are dropped. The next change of its
 *    file (or a forced reload, or a change of NAME.conf that reloads it)
 *    tries again, on the kept state, as a reload.
 *  - Crash loop: the crash that makes crash_limit crashes within
 *    HS_CRASH_WINDOW_S seconds quarantines (no rollback), and the plugin
 *    then waits for different content: forced reloads of the same bytes
 *    are refused.
 *
 * A crash during a swap is the swap's failure (swap.h: the old version
 * comes back); a crash in unload() does not stop the unload or the reload
 * under way. Every crash is logged once ("crashed": which callback of
 * which version, the signal, the address in the plugin's image, what the
 * host did), counted, and kept for `hotswap status`.
 */
#ifndef HS_CRASH_H
#define HS_CRASH_H

#include <stdint.h>

#include "cache.h"
#include "err.h"
#include "guard.h"
#include "handoff.h"
#include "loader.h"
#include "loop.h"
#include "state.h"

#define HS_CRASH_WINDOW_S 60   /* the crash-loop window */
#define HS_CRASH_LIMIT_MAX 100 /* the largest crash_limit */

struct hs_slot;

typedef struct hs_crash {
  /* the version the last reload replaced, kept for a rollback */
  hs_image prev_img;         /* handle NULL when none is kept */
  hs_cache_file prev_copy;   /* its copy in the cache */
  hs_state prev_state;       /* the bytes it handed to the live version */
  char prev_version[128];
  uint64_t prev_build_key;   /* source plugins: the inputs it was built of */
  hs_timer grace;            /* drops it when the grace period is over */

  int quarantined;           /* not running since a crash */
  int held;                  /* crash loop: waits for different content */
  uint64_t held_hash;        /* the content that crashed last */
  uint32_t count;            /* crashes since the host started */
  uint64_t times[HS_CRASH_LIMIT_MAX]; /* the latest crashes (monotonic) */
  unsigned ntimes, next;

  /* the last crash, for status */
  hs_guard_fault last;
  char last_version[128];    /* the version that crashed */
  char last_what[200];       /* the fault (hs_guard_describe) */
  char last_where[160];      /* where it was (hs_guard_locate) */
  const char *last_action;   /* "rollback", "quarantine", "crash-loop",
                                "swap-failed", "continued" (static) */
  char last_detail[512];     /* what the host did, a sentence */
  int64_t last_at;           /* wall clock (s since epoch) */
} hs_crash;

/* Prepares slot->crash (in a new slot). */
void hs_crash_init(struct hs_slot *slot);

/* Drops what slot->crash keeps (a previous version); before the slot is
 * freed, and when the live version goes (unload, quarantine). */
void hs_crash_drop(struct hs_slot *slot);

/*
 * A reload has succeeded: keeps the replaced version (slot->img, copy,
 * version and state, which are moved out and left empty) for the grace
 * period, dropping one kept before. With a grace period of 0, closes it at
 * once. Called by the swap between the new load() and the slot taking the
 * new image.
 */
void hs_crash_keep(struct hs_slot *slot);

/* A version is live after a swap (or a rollback): a quarantine or a
 * crash-loop hold ends. */
void hs_crash_live(struct hs_slot *slot);

/*
 * A callback of the live version crashed outside a swap (hs_ctx.on_crash,
 * set by the registry): rolls back or quarantines (see above), logs it,
 * sets the slot's last error (HS_ECRASH, stage: the callback) and records
 * it. ctx is the slot's. May be called from any callback dispatch; the
 * plugin's fd and timer registrations stay in place.
 */
void hs_crash_fault(hs_ctx *ctx, const hs_guard_fault *f);

/*
 * Logs and records a crash the swap handles itself (in load(), migrate()
 * or unload()). image is an address in the image of the version that
 * crashed, version its version string, action what the host did
 * (a word from the list above) and detail the sentence for the log.
 */
void hs_crash_note(struct hs_slot *slot, const hs_guard_fault *f,
                   const void *image, const char *version,
                   const char *action, const char *detail);

/* A host upgrade (handoff.h): copies what slot->crash knows of crashes
 * (quarantine, crash-loop hold, the crash times, the last crash) into h,
 * whose strings then borrow slot's. The version kept for a rollback is
 * not carried: the new image has none. */
void hs_crash_save(const struct hs_slot *slot, hs_handoff_crash *h);

/* In the new image: takes what h says back into slot->crash (strings are
 * copied; callback and action names become the host's own). */
void hs_crash_restore(struct hs_slot *slot, const hs_handoff_crash *h);

/* Returns 1 and fills err (HS_ECRASH, stage "crash") if the candidate
 * with content hash must not be tried: the plugin is held after a crash
 * loop and the content is the one that crashed. 0 otherwise. */
int hs_crash_holds(const struct hs_slot *slot, uint64_t hash, hs_error *err);

#endif /* HS_CRASH_H */
