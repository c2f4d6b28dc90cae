/*
 * swap.h - the live transactions on a slot: swap a validated version in,
 * take the live version out. They run in the loop, between callbacks.
 *
 * The new copy was opened beforehand by the worker thread (worker.h), and
 * the retired image is closed by it afterwards, so the pause holds only:
 * old unload(RELOAD) -> the state carried over (same bytes, or migrate) ->
 * new load(RELOAD). If a step after the old unload fails, the old version
 * is loaded again on its own state bytes (load reason ROLLBACK): the old
 * version keeps running. The new code never writes the old state: migrate
 * fills a fresh buffer, and an unchanged layout is handed over as a copy.
 */
#ifndef HS_SWAP_H
#define HS_SWAP_H

#include "registry.h"

/*
 * Makes img, opened from the validated copy cand, the live version of slot
 * (its first load when nothing is live). Always takes over img and cand:
 * on success they are the slot's, on failure the worker closes and removes
 * them. spare is NULL or the new version's state bytes, prepared by the
 * worker (worker.h), and is taken over too. *pause_ns is how long the loop
 * was blocked; *was_reset says whether the state was reset
 * (--allow-state-reset). Returns 0, or a negative code with err filled
 * while the previous version (if any) stays live.
 */
int hs_swap_in(hs_slot *slot, hs_image *img, hs_cache_file *cand,
               hs_state *spare, uint64_t *pause_ns, int *was_reset,
               hs_error *err);

/* Unloads the live version with reason; the worker closes its image and
 * removes its copy; the fds and timers it registered are closed and
 * stopped. The state is kept in the slot. Harmless when nothing is live. */
void hs_swap_out(hs_slot *slot, hs_unload_reason reason);

/* A host upgrade (upgrade.h): unloads the live version with reason
 * UPGRADE and leaves everything else in place (image, copy, state, fds,
 * timers), for hs_registry_save. Harmless when nothing is live. */
void hs_swap_detach(hs_slot *slot);

/*
 * Loads slot's image (slot->img, slot->copy) on slot->state, which must
 * have the layout the image declares: after hs_swap_detach when the
 * upgrade failed (reason ROLLBACK), or in the new host on the state handed
 * over (reason UPGRADE). Returns 0, or a negative code with err filled:
 * the plugin is then not running, its image is closed by the worker, its
 * state, fds and timers are kept for the next version.
 */
int hs_swap_attach(hs_slot *slot, hs_load_reason reason, hs_error *err);

/* A crash (crash.h): drops the live version without its unload(), since
 * its code just crashed; ticks stop, its image is retired as at unload.
 * The state, fds and timers stay in the slot. Harmless when none is live. */
void hs_swap_drop(hs_slot *slot);

/*
 * A crash within the grace period (crash.h): drops the live version as
 * hs_swap_drop does, and brings back the version slot->crash kept, on the
 * state bytes kept with it (load reason ROLLBACK). Returns 0, or a
 * negative code with err filled (HS_ENOENT when none is kept); the plugin
 * is then not running, with that state kept.
 */
int hs_swap_back(hs_slot *slot, hs_error *err);

#endif /* HS_SWAP_H */
