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
 * them. *pause_ns is how long the loop was blocked; *was_reset says whether
 * the state was reset (--allow-state-reset). Returns 0, or a negative code
 * with err filled while the previous version (if any) stays live.
 */
int hs_swap_in(hs_slot *slot, hs_image *img, hs_cache_file *cand,
               uint64_t *pause_ns, int *was_reset, hs_error *err);

/* Unloads the live version with reason; the worker closes its image and
 * removes its copy; the fds and timers it registered are closed and
 * stopped. The state is kept in the slot. Harmless when nothing is live. */
void hs_swap_out(hs_slot *slot, hs_unload_reason reason);

#endif /* HS_SWAP_H */
