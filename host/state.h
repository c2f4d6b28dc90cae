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
  int mapped;        /* data is a private mapping (hs_state_map_fd) */
} hs_state;

/* Allocates size zeroed bytes of layout version. Returns 0 or HS_ENOMEM. */
int hs_state_init(hs_state *s, uint32_t version, uint32_t size);
/* Frees the bytes; s is left empty (harmless on an empty s). */
void hs_state_free(hs_state *s);
/* Makes dst an independent copy of src. Returns 0 or HS_ENOMEM. */
int hs_state_copy(hs_state *dst, const hs_state *src);
/* Moves src into dst (freeing what dst had); src is left empty. */
void hs_state_move(hs_state *dst, hs_state *src);

/* hs_state_init, and every page of the bytes touched: for the loader
 * thread, which prepares the next version's state ahead of the swap, so
 * that the pause does not wait for page faults. Returns 0 or HS_ENOMEM. */
int hs_state_prepare(hs_state *s, uint32_t version, uint32_t size);

/* hs_state_init from spare (NULL, or bytes from hs_state_prepare) when it
 * has that version and size; spare is taken over (emptied) either way.
 * Returns 0 or HS_ENOMEM. */
int hs_state_init_spare(hs_state *out, uint32_t version, uint32_t size,
                        hs_state *spare);

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
 * "migrate". spare is NULL or zeroed bytes prepared for desc's layout
 * (hs_state_prepare), always taken over: they become out's bytes when they
 * fit the layout, else they are freed. On failure *out is left empty.
 * was_reset may be NULL.
 */
int hs_state_migrate(const hs_state *old, const hs_plugin *desc, hs_ctx *ctx,
                     int allow_reset, const char *file, hs_state *spare,
                     hs_state *out, int *was_reset, hs_error *err);

/*
 * How a plugin's state goes to its validators: one memfd per plugin, kept
 * mapped in the host, so that a snapshot is one memcpy into pages that
 * exist already (a fresh memfd of 1 MiB costs the loop ~0.7 ms here, the
 * copy ~0.1 ms). Readers get an fd they can neither write nor resize
 * (F_SEAL_FUTURE_WRITE, F_SEAL_SHRINK, F_SEAL_GROW); only the host's own
 * mapping writes. A snapshot is lent from its write until
 * hs_state_snap_done: the next write goes to a new memfd while it is, so a
 * reader sees the same bytes until it is done with them.
 */
typedef struct hs_state_snap {
  int fd;            /* the memfd, or -1 before the first snapshot */
  void *map;         /* fd mapped shared and writable; NULL if size 0 */
  uint32_t size;     /* bytes of fd */
  int lent;          /* a reader may still read the last snapshot */
} hs_state_snap;

#define HS_STATE_SNAP_INIT {-1, NULL, 0, 0}

/* Writes s's bytes to snap (to a new memfd when the size changed or the
 * last snapshot is still lent) and lends it. Returns a new fd for the
 * reader (close-on-exec; the caller closes it), or a negative code: snap
 * is then empty again. */
int hs_state_snap_write(hs_state_snap *snap, const hs_state *s);
/* The reader of the last snapshot is done with it (or dead): the next
 * write may reuse the memfd. */
void hs_state_snap_done(hs_state_snap *snap);
/* Unmaps and closes snap's memfd (readers' fds stay valid); snap is left
 * as HS_STATE_SNAP_INIT. */
void hs_state_snap_free(hs_state_snap *snap);

/* Maps size bytes of layout version from fd (from byte 0) into a new s,
 * private and writable: copy-on-write, so only the pages written are
 * copied; every page is mapped at once (MADV_POPULATE_READ), not faulted
 * in one by one. Pages not written show fd's bytes: fd must not change
 * while s is used (a lent snapshot does not). hs_state_free unmaps it.
 * Returns 0, or HS_EIO (fd unreadable or shorter than size) / HS_ENOMEM. */
int hs_state_map_fd(hs_state *s, int fd, uint32_t version, uint32_t size);

#endif /* HS_STATE_H */
