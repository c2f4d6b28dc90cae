/* crash.c - rollback, quarantine and the crash-loop bound; see crash.h. */
#include "crash.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "registry.h"
#include "swap.h"

_Static_assert(HS_CRASH_LIMIT_MAX == HS_HANDOFF_CRASH_TIMES,
               "a handoff carries every crash time hs_crash keeps");

static void grace_over(hs_timer *t) {
  hs_crash_drop(t->data);
}

void hs_crash_init(hs_slot *slot) {
  memset(&slot->crash, 0, sizeof(slot->crash));
  hs_loop_timer_init(&slot->crash.grace, grace_over, slot);
}

void hs_crash_drop(hs_slot *slot) {
  hs_crash *c = &slot->crash;

  if (c->grace.cb) /* a slot made without hs_crash_init has no timer */
    hs_loop_timer_stop(&c->grace);
  if (c->prev_img.handle || c->prev_copy.path)
    hs_worker_close(&slot->reg->worker, slot->name, &c->prev_img,
                    &c->prev_copy);
  hs_state_free(&c->prev_state);
  c->prev_version[0] = '\0';
}

void hs_crash_keep(hs_slot *slot) {
  hs_crash *c = &slot->crash;
  hs_registry *reg = slot->reg;

  hs_crash_drop(slot); /* one kept from the reload before goes now */
  c->prev_img = slot->img;
  c->prev_copy = slot->copy;
  memset(&slot->img, 0, sizeof(slot->img));
  memset(&slot->copy, 0, sizeof(slot->copy));
  hs_state_move(&c->prev_state, &slot->state);
  snprintf(c->prev_version, sizeof(c->prev_version), "%s", slot->version);
  c->prev_build_key = slot->build_key;
  if (reg->opts.crash_grace_ms == 0 || !reg->loop) {
    hs_crash_drop(slot);
    return;
  }
  if (!c->grace.cb)
    hs_loop_timer_init(&c->grace, grace_over, slot);
  hs_loop_timer_start(reg->loop, &c->grace,
                      (uint64_t)reg->opts.crash_grace_ms * 1000000u, 0);
}

void hs_crash_live(hs_slot *slot) {
  slot->crash.quarantined = 0;
  slot->crash.held = 0;
}

/* Adds a crash at now; returns how many fell within the window. */
static unsigned count_recent(hs_crash *c, uint64_t now) {
  const uint64_t window = (uint64_t)HS_CRASH_WINDOW_S * 1000000000u;
  unsigned n = 0;

  c->times[c->next] = now;
  c->next = (c->next + 1) % HS_CRASH_LIMIT_MAX;
  if (c->ntimes < HS_CRASH_LIMIT_MAX)
    c->ntimes++;
  for (unsigned i = 0; i < c->ntimes; i++)
    n += now - c->times[i] <= window;
  return n;
}

/* Describes f into the slot's record before its image goes (dladdr). */
static void describe(hs_slot *slot, const hs_guard_fault *f,
                     const void *image) {
  hs_crash *c = &slot->crash;

  hs_guard_describe(f, image, slot->name, c->last_what,
                    sizeof(c->last_what));
  hs_guard_locate(f->pc, image, slot->name, c->last_where,
                  sizeof(c->last_where));
}

/* Keeps the crash described by describe() for status, and logs it. */
static void record(hs_slot *slot, const hs_guard_fault *f,
                   const char *version, const char *action,
                   const char *detail) {
  hs_crash *c = &slot->crash;

  c->count++;
  c->last = *f;
  snprintf(c->last_version, sizeof(c->last_version), "%s", version);
  c->last_action = action;
  snprintf(c->last_detail, sizeof(c->last_detail), "%s", detail);
  c->last_at = (int64_t)time(NULL);
  hs_log(HS_LOG_ERROR, slot->name, "crashed", "%s() of version %s: %s; %s",
         f->callback ? f->callback : "?", version, c->last_what, detail);
}

void hs_crash_note(hs_slot *slot, const hs_guard_fault *f, const void *image,
                   const char *version, const char *action,
                   const char *detail) {
  describe(slot, f, image);
  count_recent(&slot->crash, hs_now_ns());
  record(slot, f, version, action, detail);
}

/* The live version is dropped without unload(); the state, fds and timers
 * stay. held: only different content may try again. */
static void quarantine(hs_slot *slot, int held) {
  hs_crash *c = &slot->crash;
  uint64_t hash = slot->copy.hash;

  hs_swap_drop(slot);
  hs_crash_drop(slot);
  slot->rejected_hash = hash;
  c->quarantined = 1;
  c->held = held;
  c->held_hash = hash;
}

/* The slot's last error for the crash its record describes. */
static void crash_error(hs_slot *slot) {
  const hs_crash *c = &slot->crash;
  const char *callback = c->last.callback ? c->last.callback : "crash";
  hs_error_set(&slot->last_error, HS_ECRASH, callback,
               "%s() of version %s crashed: %s; %s", callback,
               c->last_version, c->last_what, c->last_detail);
}

void hs_crash_fault(hs_ctx *ctx, const hs_guard_fault *f) {
  hs_slot *slot = ctx->owner;
  hs_crash *c = &slot->crash;
  const uint32_t limit = slot->reg->opts.crash_limit;
  char version[sizeof(slot->version)], detail[sizeof(c->last_detail)];
  const char *action;
  hs_error err;

  snprintf(version, sizeof(version), "%s", slot->version);
  describe(slot, f, slot->img.desc);
  unsigned recent = count_recent(c, hs_now_ns());
  if (limit && recent >= limit) {
    quarantine(slot, 1);
    action = "crash-loop";
    snprintf(detail, sizeof(detail),
             "quarantined after %u crashes in %d s: %s is not tried again "
             "until its content changes",
             recent, HS_CRASH_WINDOW_S, slot->file);
  } else if (c->prev_img.handle) {
    char back[sizeof(c->prev_version)];
    snprintf(back, sizeof(back), "%s", c->prev_version);
    uint64_t bad = slot->copy.hash;
    int rc = hs_swap_back(slot, &err);
    slot->rejected_hash = bad; /* either way, that content is known bad */
    if (rc == 0) {
      action = "rollback";
      snprintf(detail, sizeof(detail),
               "rolled back to version %s on the state saved before the "
               "swap; this content of %s is not tried again until the file "
               "changes",
               back, slot->file);
    } else {
      c->quarantined = 1;
      action = "quarantine";
      snprintf(detail, sizeof(detail),
               "rollback to version %s failed (%.80s); quarantined: the "
               "plugin is not running, its state, fds and timers are kept "
               "until %s changes",
               back, err.msg, slot->file);
    }
  } else {
    quarantine(slot, 0);
    action = "quarantine";
    snprintf(detail, sizeof(detail),
             "quarantined: the plugin is not running, its state, fds and "
             "timers are kept until %s changes",
             slot->file);
  }
  record(slot, f, version, action, detail);
  crash_error(slot);
}

int hs_crash_holds(const hs_slot *slot, uint64_t hash, hs_error *err) {
  const hs_crash *c = &slot->crash;

  if (!c->held || hash != c->held_hash)
    return 0;
  hs_error_set(err, HS_ECRASH, "crash",
               "%s crashed %u times within %d s; the same content is not "
               "tried again until %s changes",
               slot->name, slot->reg->opts.crash_limit, HS_CRASH_WINDOW_S,
               slot->file);
  return 1;
}

/* The host's own static string for a callback or action name read from a
 * handoff (hs_crash keeps those as static strings), or NULL if name is
 * empty or none of list. */
static const char *known(const char *name, const char *const *list) {
  for (; name && *name && *list; list++)
    if (strcmp(name, *list) == 0)
      return *list;
  return NULL;
}

static const char *const callbacks[] = {
    "load", "unload", "tick", "on_io", "on_timer", "on_config", "migrate",
    NULL};
static const char *const actions[] = {"rollback",    "quarantine",
                                      "crash-loop",  "swap-failed",
                                      "continued",   NULL};

void hs_crash_save(const hs_slot *slot, hs_handoff_crash *h) {
  const hs_crash *c = &slot->crash;

  memset(h, 0, sizeof(*h));
  h->quarantined = c->quarantined;
  h->held = c->held;
  h->held_hash = c->held_hash;
  h->count = c->count;
  /* The ring, oldest first. */
  unsigned first = c->ntimes < HS_CRASH_LIMIT_MAX ? 0 : c->next;
  h->ntimes = c->ntimes;
  for (unsigned i = 0; i < c->ntimes; i++)
    h->times[i] = c->times[(first + i) % HS_CRASH_LIMIT_MAX];
  if (!c->count)
    return;
  h->callback = (char *)(c->last.callback ? c->last.callback : "");
  h->version = (char *)c->last_version;
  h->what = (char *)c->last_what;
  h->where = (char *)c->last_where;
  h->action = (char *)(c->last_action ? c->last_action : "");
  h->detail = (char *)c->last_detail;
  h->signo = c->last.signo;
  h->code = c->last.code;
  h->hang = c->last.hang;
  h->addr = c->last.addr;
  h->pc = c->last.pc;
  h->at = c->last_at;
}

void hs_crash_restore(hs_slot *slot, const hs_handoff_crash *h) {
  hs_crash *c = &slot->crash;

  c->quarantined = h->quarantined;
  c->held = h->held;
  c->held_hash = h->held_hash;
  c->count = h->count;
  c->ntimes = h->ntimes < HS_CRASH_LIMIT_MAX ? h->ntimes : HS_CRASH_LIMIT_MAX;
  for (unsigned i = 0; i < c->ntimes; i++)
    c->times[i] = h->times[i];
  c->next = c->ntimes % HS_CRASH_LIMIT_MAX;
  if (!h->count)
    return;
  memset(&c->last, 0, sizeof(c->last));
  c->last.callback = known(h->callback, callbacks);
  c->last.signo = h->signo;
  c->last.code = h->code;
  c->last.hang = h->hang;
  c->last.addr = (uintptr_t)h->addr;
  c->last.pc = (uintptr_t)h->pc;
  c->last_action = known(h->action, actions);
  snprintf(c->last_version, sizeof(c->last_version), "%s",
           h->version ? h->version : "");
  snprintf(c->last_what, sizeof(c->last_what), "%s", h->what ? h->what : "");
  snprintf(c->last_where, sizeof(c->last_where), "%s",
           h->where ? h->where : "");
  snprintf(c->last_detail, sizeof(c->last_detail), "%s",
           h->detail ? h->detail : "");
  c->last_at = h->at;
  if (c->quarantined)
    crash_error(slot); /* what the last error was before the upgrade */
}
