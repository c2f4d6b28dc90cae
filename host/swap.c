/* swap.c - the live swap transaction; see swap.h. */
#include "swap.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "crash.h"
#include "guard.h"
#include "imagemap.h"
#include "log.h"
#include "loop.h"
#include "threads.h"
#include "worker.h"

/* Points the slot's ctx at a version and its state. */
static void ctx_use(hs_slot *slot, const hs_plugin *desc, void *state) {
  slot->ctx.desc = desc;
  slot->ctx.state = state;
}

/* The threads before a live load() of slot's version; those it started,
 * once it returned (so that other plugins' checks leave them out). */
static void threads_before(hs_slot *slot) {
  hs_threads_free(&slot->born);
  hs_threads_free(&slot->threads);
  hs_threads_snapshot(&slot->threads);
}

static void threads_born(hs_slot *slot) {
  hs_threads_since(&slot->threads, &slot->born);
}

/* After slot's version stopped (unload(), or a failed load()): threads
 * started since its load() that still run, except those another plugin's
 * load() started. One exiting right now gets a few milliseconds. */
static void threads_left(hs_slot *slot, hs_threads *left) {
  hs_registry *reg = slot->reg;
  left->tids = NULL;
  left->n = 0;
  for (int i = 0; slot->threads.n > 0; i++) {
    if (hs_threads_since(&slot->threads, left) != 0)
      return;
    for (size_t j = 0; j < reg->nslots; j++)
      if (reg->slots[j] != slot)
        hs_threads_remove(left, &reg->slots[j]->born);
    if (left->n == 0 || i == 5)
      return;
    hs_threads_free(left);
    usleep(500);
  }
}

/* Hands a version that stopped to the worker to close its image, unless
 * threads it started still run (left): dlclose would unmap the code they
 * run, so the image stays mapped for good (only its copy is deleted), and
 * the host says so. Takes over img, copy and left. */
static void retire(hs_slot *slot, hs_image *img, hs_cache_file *copy,
                   const char *version, hs_threads *left) {
  char tids[128];
  if (left->n == 0 || !img->handle) {
    hs_threads_free(left);
    hs_worker_close(&slot->reg->worker, slot->name, img, copy);
    return;
  }
  uint64_t bytes = hs_imagemap_mapped(copy->path);
  uint64_t all = hs_registry_leaked(slot->reg, slot->name, bytes);
  hs_log(HS_LOG_WARN, slot->name, "warning",
         "version %s left %zu thread%s running after it stopped (tid %s): "
         "its image is not unmapped, since the thread%s would run unmapped "
         "code; it keeps %" PRIu64 " KiB (%" PRIu64 " KiB in all for %s). "
         "Stop and join the plugin's threads in unload()",
         version, left->n, left->n == 1 ? "" : "s",
         hs_threads_format(left, 8, tids, sizeof(tids)),
         left->n == 1 ? "" : "s", (bytes + 1023) / 1024, (all + 1023) / 1024,
         slot->name);
  memset(img, 0, sizeof(*img)); /* never dlclosed */
  hs_cache_remove(slot->reg->cache, copy);
  hs_threads_free(left);
}

static int load_failed(hs_slot *slot, int rc, const char *which,
                       hs_error *err) {
  hs_api_ctx_stop(&slot->ctx);
  return hs_error_set(err, rc < 0 ? rc : HS_ELOAD, "load",
                      "load() of %s%s returned %s (%s)", which, slot->file,
                      hs_err_name(rc), hs_strerror(rc));
}

/* load() of d crashed (hs_guard_last() says how). */
static int load_crashed(hs_slot *slot, const hs_plugin *d, const char *which,
                        hs_error *err) {
  char what[200];
  hs_api_ctx_stop(&slot->ctx);
  hs_guard_describe(hs_guard_last(), d, slot->name, what, sizeof(what));
  return hs_error_set(err, HS_ECRASH, "load", "load() of %s%s crashed: %s",
                      which, slot->file, what);
}

/* A load() of d that left nothing live failed with rc: err says how, and a
 * crash is also noted in the slot's crash record. Returns err->code. */
static int load_gone(hs_slot *slot, const hs_plugin *d, int rc, int crashed,
                     hs_error *err) {
  if (!crashed)
    return load_failed(slot, rc, "", err);
  load_crashed(slot, d, "", err);
  hs_crash_note(slot, hs_guard_last(), d, d->version, "swap-failed",
                "the plugin is not running");
  return err->code;
}

/* load() of the version ctx points at, under the guard (guard.h): its
 * value, or HS_ECRASH with *crashed set. */
static int load_guarded(hs_slot *slot, hs_load_reason reason, int *crashed) {
  hs_guard_fault f;
  int rc = 0;
  *crashed = hs_guard_load(&slot->ctx, reason, &rc, &f) != 0;
  return *crashed ? HS_ECRASH : rc;
}

/* unload() of the live version under the guard: a crash is logged (then
 * says what happens next) and the unload goes on (crash.h). */
static void unload_guarded(hs_slot *slot, hs_unload_reason reason,
                           const char *then) {
  hs_guard_fault f;
  if (hs_guard_unload(&slot->ctx, reason, &f) != 0)
    hs_crash_note(slot, &f, slot->ctx.desc, slot->version, "continued",
                  then);
}

/* Loads d with nothing live: on zeroed state (START), or on the state kept
 * from a version that could not be rolled back (RELOAD, migrated if its
 * layout differs). */
static int first_load(hs_slot *slot, const hs_plugin *d, hs_state *spare,
                      int *was_reset, hs_threads *left, hs_error *err) {
  hs_state st;
  hs_load_reason reason = HS_LOAD_START;
  if (slot->state.version != 0) {
    int rc = hs_state_migrate(&slot->state, d, &slot->ctx,
                              slot->reg->opts.allow_state_reset, slot->file,
                              spare, &st, was_reset, err);
    if (rc != 0)
      return rc;
    reason = HS_LOAD_RELOAD;
  } else if (hs_state_init_spare(&st, d->state_version, d->state_size,
                                 spare) != 0) {
    return hs_error_set(err, HS_ENOMEM, "load",
                        "cannot allocate %u bytes of state for %s",
                        d->state_size, slot->file);
  }
  ctx_use(slot, d, st.data);
  threads_before(slot);
  int crashed;
  int rc = load_guarded(slot, reason, &crashed);
  if (rc != 0) {
    threads_left(slot, left);
    load_gone(slot, d, rc, crashed, err);
    if (reason == HS_LOAD_START)
      hs_api_ctx_release(&slot->ctx); /* what it registered dies with it */
    ctx_use(slot, NULL, NULL);
    hs_state_free(&st);
    return err->code;
  }
  threads_born(slot);
  hs_state_move(&slot->state, &st);
  return 0;
}

/* old_left and new_left: threads the old version left running after its
 * unload(), and those a failed load() of the new one left. */
static int replace(hs_slot *slot, const hs_plugin *d, hs_state *spare,
                   int *was_reset, hs_threads *old_left, hs_threads *new_left,
                   hs_error *err) {
  const hs_plugin *old = slot->img.desc;
  hs_state st = {0};
  hs_guard_fault crash;
  int rc, crashed;

  hs_api_ctx_stop(&slot->ctx);
  ctx_use(slot, old, slot->state.data);
  unload_guarded(slot, HS_UNLOAD_RELOAD,
                 "the reload goes on: the new version gets the state as "
                 "unload() left it");
  threads_left(slot, old_left);

  rc = hs_state_migrate(&slot->state, d, &slot->ctx,
                        slot->reg->opts.allow_state_reset, slot->file, spare,
                        &st, was_reset, err);
  crashed = rc == HS_ECRASH; /* hs_state_migrate's own code for it */
  if (rc == 0) {
    ctx_use(slot, d, st.data);
    threads_before(slot);
    rc = load_guarded(slot, HS_LOAD_RELOAD, &crashed);
    if (rc != 0) {
      threads_left(slot, new_left);
      rc = crashed ? load_crashed(slot, d, "the new ", err)
                   : load_failed(slot, rc, "the new ", err);
    } else {
      threads_born(slot);
    }
  }
  if (rc == 0) {
    if (old_left->n == 0)
      hs_crash_keep(slot); /* for a rollback if the new one crashes */
    hs_state_move(&slot->state, &st);
    return 0;
  }
  crash = *hs_guard_last();

  /* Roll back: the old code on its own, untouched state. */
  hs_state_free(&st);
  ctx_use(slot, old, slot->state.data);
  hs_threads_free(old_left); /* live again: its threads are no strays */
  threads_before(slot);
  int rb_crashed, rb = load_guarded(slot, HS_LOAD_ROLLBACK, &rb_crashed);
  if (rb == 0)
    threads_born(slot);
  if (crashed) {
    char back[sizeof(slot->version) + 64];
    snprintf(back, sizeof(back), "the reload is undone: version %.128s "
             "keeps running", slot->version);
    hs_crash_note(slot, &crash, d, d->version, "swap-failed",
                  rb == 0 ? back : "the plugin is not running");
  }
  if (rb_crashed)
    hs_crash_note(slot, hs_guard_last(), old, slot->version, "swap-failed",
                  "the rollback failed; the plugin is not running");
  if (rb != 0) {
    hs_api_ctx_stop(&slot->ctx);
    hs_log(HS_LOG_ERROR, slot->name, "error",
           "rollback: load() of the previous version %s returned %s; the "
           "plugin is not running (its state is kept)",
           slot->version, hs_err_name(rb));
    ctx_use(slot, NULL, NULL);
    slot->loaded = 0;
    threads_left(slot, old_left);
    retire(slot, &slot->img, &slot->copy, slot->version, old_left);
  }
  return rc;
}

int hs_swap_in(hs_slot *slot, hs_image *img, hs_cache_file *cand,
               hs_state *spare, uint64_t *pause_ns, int *was_reset,
               hs_error *err) {
  uint64_t t0 = hs_now_ns();
  hs_threads old_left = {0}, new_left = {0};
  int rc;

  *was_reset = 0;
  if (!slot->loaded) {
    rc = first_load(slot, img->desc, spare, was_reset, &new_left, err);
  } else {
    rc = replace(slot, img->desc, spare, was_reset, &old_left, &new_left,
                 err);
    if (rc == 0 && slot->img.handle) /* not kept by hs_crash_keep */
      retire(slot, &slot->img, &slot->copy, slot->version, &old_left);
  }
  if (rc != 0) {
    retire(slot, img, cand, img->desc->version, &new_left);
  } else {
    slot->img = *img;
    slot->copy = *cand;
    memset(img, 0, sizeof(*img));
    memset(cand, 0, sizeof(*cand));
    snprintf(slot->version, sizeof(slot->version), "%s",
             slot->img.desc->version);
    slot->loaded = 1;
    slot->generation++;
    hs_crash_live(slot);
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
  unload_guarded(slot, reason, "it is unloaded all the same");
  ctx_use(slot, NULL, NULL);
  hs_crash_drop(slot); /* no rollback to a version before it now */
  /* Gone for good (removed, shutdown): so are its fds and timers. */
  hs_api_ctx_release(&slot->ctx);
  hs_threads left;
  threads_left(slot, &left);
  hs_threads_free(&slot->born);
  retire(slot, &slot->img, &slot->copy, slot->version, &left);
  slot->loaded = 0;
}

void hs_swap_detach(hs_slot *slot) {
  if (!slot->loaded || slot->detached)
    return;
  hs_api_ctx_stop(&slot->ctx);
  ctx_use(slot, slot->img.desc, slot->state.data);
  unload_guarded(slot, HS_UNLOAD_UPGRADE, "the upgrade goes on");
  ctx_use(slot, NULL, NULL);
  slot->detached = 1;
}

int hs_swap_attach(hs_slot *slot, hs_load_reason reason, hs_error *err) {
  const hs_plugin *d = slot->img.desc;

  slot->detached = 0;
  if (!hs_state_compatible(&slot->state, d)) {
    slot->loaded = 0;
    hs_worker_close(&slot->reg->worker, slot->name, &slot->img, &slot->copy);
    return hs_error_set(err, HS_EDESC, "load",
                        "%s: the state carried over (version %u, %u bytes) "
                        "does not fit version %s (state version %u, %u "
                        "bytes); the state is kept",
                        slot->file, slot->state.version, slot->state.size,
                        d->version, d->state_version, d->state_size);
  }
  ctx_use(slot, d, slot->state.data);
  int crashed;
  int rc = load_guarded(slot, reason, &crashed);
  if (rc != 0) {
    load_gone(slot, d, rc, crashed, err);
    ctx_use(slot, NULL, NULL);
    slot->loaded = 0;
    hs_worker_close(&slot->reg->worker, slot->name, &slot->img, &slot->copy);
    return err->code;
  }
  slot->loaded = 1;
  hs_api_ctx_resume(&slot->ctx);
  return 0;
}

void hs_swap_drop(hs_slot *slot) {
  hs_threads left;
  if (!slot->loaded)
    return;
  hs_api_ctx_stop(&slot->ctx);
  ctx_use(slot, NULL, NULL);
  threads_left(slot, &left);
  hs_threads_free(&slot->born);
  retire(slot, &slot->img, &slot->copy, slot->version, &left);
  slot->loaded = 0;
}

int hs_swap_back(hs_slot *slot, hs_error *err) {
  hs_crash *c = &slot->crash;
  hs_state kept = c->prev_state;
  int rc, crashed;

  if (!c->prev_img.handle)
    return hs_error_set(err, HS_ENOENT, "load", "no previous version kept");
  hs_swap_drop(slot);
  slot->img = c->prev_img;
  slot->copy = c->prev_copy;
  snprintf(slot->version, sizeof(slot->version), "%s", c->prev_version);
  if (slot->source)
    slot->build_key = c->prev_build_key;
  memset(&c->prev_img, 0, sizeof(c->prev_img));
  memset(&c->prev_copy, 0, sizeof(c->prev_copy));
  memset(&c->prev_state, 0, sizeof(c->prev_state));
  hs_crash_drop(slot); /* stops the grace timer; nothing else is left */
  hs_state_move(&slot->state, &kept);
  ctx_use(slot, slot->img.desc, slot->state.data);
  threads_before(slot);
  rc = load_guarded(slot, HS_LOAD_ROLLBACK, &crashed);
  if (rc != 0) {
    hs_threads left;
    if (crashed)
      load_crashed(slot, slot->img.desc, "", err);
    else
      load_failed(slot, rc, "", err);
    ctx_use(slot, NULL, NULL);
    threads_left(slot, &left);
    retire(slot, &slot->img, &slot->copy, slot->version, &left);
    return err->code;
  }
  threads_born(slot);
  slot->loaded = 1;
  slot->generation++;
  hs_crash_live(slot);
  hs_api_ctx_resume(&slot->ctx);
  return 0;
}
