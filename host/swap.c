/* swap.c - the live swap transaction; see swap.h. */
#include "swap.h"

#include <stdio.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "loop.h"
#include "worker.h"

/* Points the slot's ctx at a version and its state. */
static void ctx_use(hs_slot *slot, const hs_plugin *desc, void *state) {
  slot->ctx.desc = desc;
  slot->ctx.state = state;
}

static int load_failed(hs_slot *slot, int rc, const char *which,
                       hs_error *err) {
  hs_api_ctx_stop(&slot->ctx);
  return hs_error_set(err, rc < 0 ? rc : HS_ELOAD, "load",
                      "load() of %s%s returned %s (%s)", which, slot->file,
                      hs_err_name(rc), hs_strerror(rc));
}

/* Loads d with nothing live: on zeroed state (START), or on the state kept
 * from a version that could not be rolled back (RELOAD, migrated if its
 * layout differs). */
static int first_load(hs_slot *slot, const hs_plugin *d, int *was_reset,
                      hs_error *err) {
  hs_state st;
  hs_load_reason reason = HS_LOAD_START;
  if (slot->state.version != 0) {
    int rc = hs_state_migrate(&slot->state, d, &slot->ctx,
                              slot->reg->opts.allow_state_reset, slot->file,
                              &st, was_reset, err);
    if (rc != 0)
      return rc;
    reason = HS_LOAD_RELOAD;
  } else if (hs_state_init(&st, d->state_version, d->state_size) != 0) {
    return hs_error_set(err, HS_ENOMEM, "load",
                        "cannot allocate %u bytes of state for %s",
                        d->state_size, slot->file);
  }
  ctx_use(slot, d, st.data);
  int rc = d->load(&slot->ctx, st.data, reason);
  if (rc != 0) {
    load_failed(slot, rc, "", err);
    if (reason == HS_LOAD_START)
      hs_api_ctx_release(&slot->ctx); /* what it registered dies with it */
    ctx_use(slot, NULL, NULL);
    hs_state_free(&st);
    return err->code;
  }
  hs_state_move(&slot->state, &st);
  return 0;
}

static int replace(hs_slot *slot, const hs_plugin *d, int *was_reset,
                   hs_error *err) {
  const hs_plugin *old = slot->img.desc;
  hs_state st = {0};
  int rc;

  hs_api_ctx_stop(&slot->ctx);
  ctx_use(slot, old, slot->state.data);
  old->unload(&slot->ctx, slot->state.data, HS_UNLOAD_RELOAD);

  rc = hs_state_migrate(&slot->state, d, &slot->ctx,
                        slot->reg->opts.allow_state_reset, slot->file, &st,
                        was_reset, err);
  if (rc == 0) {
    ctx_use(slot, d, st.data);
    rc = d->load(&slot->ctx, st.data, HS_LOAD_RELOAD);
    if (rc != 0)
      rc = load_failed(slot, rc, "the new ", err);
  }
  if (rc == 0) {
    hs_state_move(&slot->state, &st);
    return 0;
  }

  /* Roll back: the old code on its own, untouched state. */
  hs_state_free(&st);
  ctx_use(slot, old, slot->state.data);
  int rb = old->load(&slot->ctx, slot->state.data, HS_LOAD_ROLLBACK);
  if (rb != 0) {
    hs_api_ctx_stop(&slot->ctx);
    hs_log(HS_LOG_ERROR, slot->name, "error",
           "rollback: load() of the previous version %s returned %s; the "
           "plugin is not running (its state is kept)",
           slot->version, hs_err_name(rb));
    ctx_use(slot, NULL, NULL);
    slot->loaded = 0;
    hs_worker_close(&slot->reg->worker, slot->name, &slot->img, &slot->copy);
  }
  return rc;
}

int hs_swap_in(hs_slot *slot, hs_image *img, hs_cache_file *cand,
               uint64_t *pause_ns, int *was_reset, hs_error *err) {
  uint64_t t0 = hs_now_ns();
  int rc;

  *was_reset = 0;
  if (!slot->loaded) {
    rc = first_load(slot, img->desc, was_reset, err);
  } else {
    rc = replace(slot, img->desc, was_reset, err);
    if (rc == 0)
      hs_worker_close(&slot->reg->worker, slot->name, &slot->img,
                      &slot->copy);
  }
  if (rc != 0) {
    hs_worker_close(&slot->reg->worker, slot->name, img, cand);
  } else {
    slot->img = *img;
    slot->copy = *cand;
    memset(img, 0, sizeof(*img));
    memset(cand, 0, sizeof(*cand));
    snprintf(slot->version, sizeof(slot->version), "%s",
             slot->img.desc->version);
    slot->loaded = 1;
    slot->generation++;
    hs_api_ctx_resume(&slot->ctx);
  }
  *pause_ns = hs_now_ns() - t0;
  return rc;
}

void hs_swap_out(hs_slot *slot, hs_unload_reason reason) {
  if (!slot->loaded)
    return;
  hs_api_ctx_stop(&slot->ctx);
  ctx_use(slot, slot->img.desc, slot->state.data);
  slot->img.desc->unload(&slot->ctx, slot->state.data, reason);
  ctx_use(slot, NULL, NULL);
  /* Gone for good (removed, shutdown): so are its fds and timers. */
  hs_api_ctx_release(&slot->ctx);
  hs_worker_close(&slot->reg->worker, slot->name, &slot->img, &slot->copy);
  slot->loaded = 0;
}
