/*
 * state.h - the state bytes the host keeps for each plugin, and the rules
 * that carry them from one version to the next: same version and size, the
 * same bytes; otherwise the new version's migrate().
 */
#ifndef HS_STATE_H
#define HS_STATE_H

#include <stdint.h>

#include "err.h"
#include "hotswap.h"

typedef struct hs_state {
  void *data;        /* owned; size zeroed bytes at init; NULL if size 0 */
  uint32_t size;     /* bytes */
  uint32_t version;  /* layout version (the descriptor's state_version) */
} hs_state;

/* Allocates size zeroed bytes of layout version. Returns 0 or HS_ENOMEM. */
int hs_state_init(hs_state *s, uint32_t version, uint32_t size);
/* Frees the bytes; s is left empty (harmless on an empty s). */
void hs_state_free(hs_state *s);
/* Makes dst an independent copy of src. Returns 0 or HS_ENOMEM. */
int hs_state_copy(hs_state *dst, const hs_state *src);
/* Moves src into dst (freeing what dst had); src is left empty. */
void hs_state_move(hs_state *dst, hs_state *src);

/* Returns 1 if a plugin with this descriptor can take s as it is (same
 * state_version and state_size), 0 if it needs migrate(). */
int hs_state_compatible(const hs_state *s, const hs_plugin *desc);

/*
 * Builds the state for a new version described by desc from old:
 *   - compatible: *out becomes a copy of old;
 *   - otherwise, with migrate(): a zeroed state of the new layout filled by
 *     desc->migrate(ctx, new, old, old->version, old->size); a non-zero
 *     return fails with HS_EMIGRATE naming both versions and the code, a
 *     crash caught by the guard (guard.h) with HS_ECRASH naming the fault;
 *   - otherwise, allow_reset: a zeroed state, *was_reset = 1;
 *   - otherwise HS_ENOMIGRATE, naming both versions and sizes, and that
 *     file has no migrate function.
 * ctx->state is pointed at the new bytes during migrate(). Stage
 * "migrate". On failure *out is left empty. was_reset may be NULL.
 */
int hs_state_migrate(const hs_state *old, const hs_plugin *desc, hs_ctx *ctx,
                     int allow_reset, const char *file, hs_state *out,
                     int *was_reset, hs_error *err);

/* Writes s's bytes to a new sealed memfd. Returns the fd (close-on-exec)
 * or a negative code. */
int hs_state_to_memfd(const hs_state *s);
/* Reads size bytes of layout version from fd into a new s. Returns 0, or
 * HS_EIO / HS_ENOMEM. */
int hs_state_from_fd(hs_state *s, int fd, uint32_t version, uint32_t size);

#endif /* HS_STATE_H */
