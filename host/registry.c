/* registry.c - the plugins of one directory and their pipeline; see
 * registry.h. */
#include "registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "swap.h"

static void slot_kick(hs_slot *slot);

/* "counter.so" is a plugin file; ".counter.so", "x.c" and ".so" are not. */
static int is_plugin_file(const char *file) {
  size_t n = strlen(file);
  return n > 3 && file[0] != '.' && strcmp(file + n - 3, ".so") == 0 &&
         !strchr(file, '/');
}

static double ms(uint64_t ns) { return (double)ns / 1e6; }

hs_slot *hs_registry_find(hs_registry *reg, const char *name) {
  for (size_t i = 0; i < reg->nslots; i++)
    if (strcmp(reg->slots[i]->name, name) == 0)
      return reg->slots[i];
  return NULL;
}

static hs_slot *find_file(hs_registry *reg, const char *file) {
  for (size_t i = 0; i < reg->nslots; i++)
    if (strcmp(reg->slots[i]->file, file) == 0)
      return reg->slots[i];
  return NULL;
}

static hs_slot *slot_new(hs_registry *reg, const char *file) {
  if (reg->nslots == reg->capslots) {
    size_t cap = reg->capslots ? reg->capslots * 2 : 16;
    hs_slot **s = realloc(reg->slots, cap * sizeof(*s));
    if (!s)
      return NULL;
    reg->slots = s;
    reg->capslots = cap;
  }
  hs_slot *slot = calloc(1, sizeof(*slot));
  if (!slot)
    return NULL;
  slot->reg = reg;
  slot->file = strdup(file);
  slot->name = strndup(file, strlen(file) - 3);
  if (!slot->file || !slot->name) {
    free(slot->file);
    free(slot->name);
    free(slot);
    return NULL;
  }
  hs_api_ctx_init(&slot->ctx, slot->name, reg->dir, reg->loop, 0);
  reg->slots[reg->nslots++] = slot;
  return slot;
}

/* Ends a forced reload's wait with its outcome. */
static void slot_done(hs_slot *slot, const hs_error *err) {
  hs_reload_cb cb = slot->done_cb;
  if (!cb)
    return;
  slot->done_cb = NULL;
  cb(slot, err, slot->done_data);
}

static void slot_free(hs_registry *reg, hs_slot *slot) {
  hs_error e;
  if (slot->sb) {
    hs_sandbox_cancel(slot->sb);
    slot->sb = NULL;
    reg->running--;
  }
  if (slot->opening)
    slot->opening->data = NULL; /* the worker closes what it opened */
  hs_cache_remove(reg->cache, &slot->candidate);
  hs_error_set(&e, HS_ENOENT, "", "%s was removed", slot->file);
  slot_done(slot, &e);
  hs_state_free(&slot->state);
  free(slot->name);
  free(slot->file);
  free(slot);
}

static void slot_drop(hs_registry *reg, hs_slot *slot) {
  for (size_t i = 0; i < reg->nslots; i++) {
    if (reg->slots[i] == slot) {
      memmove(&reg->slots[i], &reg->slots[i + 1],
              (reg->nslots - i - 1) * sizeof(*reg->slots));
      reg->nslots--;
      break;
    }
  }
  slot_free(reg, slot);
}

/* Starts the next slots that wait for a free validator. */
static void run_queue(hs_registry *reg) {
  for (size_t i = 0; i < reg->nslots && reg->running < reg->max_running;
       i++) {
    hs_slot *slot = reg->slots[i];
    if (slot->queued) {
      slot->queued = 0;
      slot_kick(slot);
    }
  }
}

static void reject(hs_slot *slot, const hs_error *err) {
  slot->last_error = *err;
  if (slot->loaded)
    hs_log(HS_LOG_ERROR, slot->name, "rejected",
           "%s: stage %s: %s (%s); version %s keeps running", slot->file,
           err->stage, err->msg, hs_err_name(err->code), slot->version);
  else
    hs_log(HS_LOG_ERROR, slot->name, "rejected",
           "%s: stage %s: %s (%s); the plugin is not running", slot->file,
           err->stage, err->msg, hs_err_name(err->code));
  slot_done(slot, err);
}

/* A newer file arrived while this candidate was in the pipeline: it is
 * stale; start over with the newest. */
static void restart(hs_slot *slot) {
  hs_cache_remove(slot->reg->cache, &slot->candidate);
  slot->again = 0;
  slot->detect_ns = hs_now_ns();
  slot_kick(slot);
}

static void on_opened(hs_open_job *job) {
  hs_slot *slot = job->data;
  hs_registry *reg = slot->reg;
  hs_error err;
  uint64_t pause = 0;
  int was_reset = 0, first = !slot->loaded;

  slot->opening = NULL;
  if (job->rc != 0) {
    slot->rejected_hash = slot->candidate.hash;
    hs_cache_remove(reg->cache, &slot->candidate);
    reject(slot, &job->err);
    return;
  }
  if (slot->again) {
    hs_worker_close(&reg->worker, slot->name, &job->img, &slot->candidate);
    restart(slot);
    return;
  }
  hs_error_clear(&err);
  uint64_t candidate_hash = slot->candidate.hash;
  if (hs_swap_in(slot, &job->img, &slot->candidate, &pause, &was_reset,
                 &err) != 0) {
    slot->rejected_hash = candidate_hash;
    reject(slot, &err);
    return;
  }
  slot->last.swapped_ns = hs_now_ns() - slot->detect_ns;
  slot->last.pause_ns = pause;
  slot->loaded_at = (int64_t)time(NULL);
  slot->rejected_hash = 0;
  hs_error_clear(&slot->last_error);
  if (!first)
    slot->reloads++;
  if (was_reset)
    hs_log(HS_LOG_WARN, slot->name, "warning",
           "%s has no migrate function: its state was reset to zero "
           "(--allow-state-reset)",
           slot->file);
  hs_log(HS_LOG_INFO, slot->name, first ? "loaded" : "reloaded",
         "version %s, state v%" PRIu32 " (%" PRIu32 " bytes), generation "
         "%" PRIu32 ", from %s in %.2f ms (validated in %.2f ms, paused the "
         "loop %.0f us)",
         slot->version, slot->state.version, slot->state.size,
         slot->generation, slot->file, ms(slot->last.swapped_ns),
         ms(slot->last.validated_ns), (double)pause / 1e3);
  slot_done(slot, &err);
}

static void on_verdict(hs_sandbox *sb, const hs_verdict *v, void *data) {
  hs_slot *slot = data;
  hs_registry *reg = slot->reg;
  (void)sb;

  slot->sb = NULL;
  reg->running--;
  hs_log(HS_LOG_DEBUG, slot->name, "validated",
         "%s: verdict after %.0f us in the sandbox", slot->file,
         (double)v->elapsed_ns / 1e3);
  if (slot->again) {
    restart(slot);
  } else if (v->err.code != 0) {
    slot->rejected_hash = slot->candidate.hash;
    hs_cache_remove(reg->cache, &slot->candidate);
    reject(slot, &v->err);
  } else {
    slot->last.validated_ns = hs_now_ns() - slot->detect_ns;
    slot->opening = hs_worker_open(&reg->worker, slot->candidate.path,
                                   slot->file,
                                   slot->loaded ? slot->img.handle : NULL,
                                   on_opened, slot);
    if (!slot->opening) {
      hs_error err;
      hs_error_set(&err, HS_ENOMEM, "open", "out of memory opening %s",
                   slot->file);
      hs_cache_remove(reg->cache, &slot->candidate);
      reject(slot, &err);
    }
  }
  run_queue(reg);
}

/* Takes the slot's file through copy -> (unchanged?) -> validation. */
static void slot_kick(hs_slot *slot) {
  hs_registry *reg = slot->reg;
  hs_error err;

  if (slot->sb || slot->opening) {
    slot->again = 1;
    return;
  }
  if (reg->running >= reg->max_running) {
    slot->queued = 1;
    return;
  }
  hs_error_clear(&err);
  if (hs_cache_add(reg->cache, reg->dirfd, slot->file, &slot->candidate,
                   &err) != 0) {
    if (err.code == HS_ENOENT && !slot->done_cb)
      return; /* gone again already; the watcher reports the removal */
    reject(slot, &err);
    return;
  }
  int force = slot->force;
  slot->force = 0;
  if (!force && ((slot->loaded && slot->candidate.hash == slot->copy.hash &&
                  slot->candidate.size == slot->copy.size) ||
                 slot->candidate.hash == slot->rejected_hash)) {
    hs_log(HS_LOG_DEBUG, slot->name, "unchanged",
           "%s: same content as before; nothing to do", slot->file);
    hs_cache_remove(reg->cache, &slot->candidate);
    return;
  }

  hs_sandbox_req req = {
      .name = slot->name,
      .dir = reg->dir,
      .file = slot->file,
      .path = slot->candidate.path,
      .state = slot->loaded ? &slot->state : NULL,
      .reason = slot->loaded ? HS_LOAD_RELOAD : HS_LOAD_START,
      .allow_reset = reg->opts.allow_state_reset,
      .limits = reg->opts.limits,
      .log_format = reg->opts.log_format,
      .log_level = reg->opts.log_level,
  };
  if (hs_sandbox_start(&slot->sb, reg->pool, &req, on_verdict, slot, &err) !=
      0) {
    hs_cache_remove(reg->cache, &slot->candidate);
    reject(slot, &err);
    return;
  }
  reg->running++;
  hs_log(HS_LOG_DEBUG, slot->name, "validating",
         "%s copied into the cache %.0f us after the change was seen",
         slot->file, (double)(hs_now_ns() - slot->detect_ns) / 1e3);
}

void hs_registry_changed(hs_registry *reg, const char *file) {
  if (!is_plugin_file(file))
    return;
  hs_slot *slot = find_file(reg, file);
  if (!slot && !(slot = slot_new(reg, file))) {
    hs_log(HS_LOG_ERROR, NULL, "error", "out of memory for %s", file);
    return;
  }
  if (!slot->sb && !slot->opening && !slot->queued)
    slot->detect_ns = hs_now_ns();
  if (!slot->queued)
    slot_kick(slot);
}

void hs_registry_removed(hs_registry *reg, const char *file) {
  hs_slot *slot = find_file(reg, file);
  if (!slot)
    return;
  if (slot->loaded) {
    hs_swap_out(slot, HS_UNLOAD_REMOVED);
    hs_log(HS_LOG_INFO, slot->name, "unloaded",
           "%s was removed; version %s unloaded", file, slot->version);
  }
  slot_drop(reg, slot);
  run_queue(reg);
}

void hs_registry_scan(hs_registry *reg) {
  DIR *d;
  struct dirent *e;
  int fd = dup(reg->dirfd);

  if (fd < 0 || !(d = fdopendir(fd))) {
    if (fd >= 0)
      close(fd);
    hs_log(HS_LOG_ERROR, NULL, "error", "cannot read %s: %s", reg->dir,
           strerror(errno));
    return;
  }
  rewinddir(d);
  while ((e = readdir(d)) != NULL)
    hs_registry_changed(reg, e->d_name);
  closedir(d);
  /* Plugins whose file vanished while we were not looking. */
  for (size_t i = reg->nslots; i-- > 0;) {
    hs_slot *slot = reg->slots[i];
    if (faccessat(reg->dirfd, slot->file, F_OK, AT_SYMLINK_NOFOLLOW) != 0)
      hs_registry_removed(reg, slot->file);
  }
}

int hs_registry_reload(hs_registry *reg, const char *name, hs_reload_cb cb,
                       void *data) {
  hs_slot *slot = hs_registry_find(reg, name);
  if (!slot)
    return HS_ENOENT;
  if (slot->done_cb)
    return HS_EBUSY;
  slot->done_cb = cb;
  slot->done_data = data;
  slot->force = 1;
  hs_registry_changed(reg, slot->file);
  return 0;
}

int hs_registry_idle(const hs_registry *reg) {
  return reg->running == 0;
}

int hs_registry_init(hs_registry *reg, hs_loop *loop, hs_cache *cache,
                     const char *dir, const hs_registry_opts *opts,
                     hs_error *err) {
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  memset(reg, 0, sizeof(*reg));
  reg->loop = loop;
  reg->cache = cache;
  reg->opts = *opts;
  reg->max_running = (unsigned)(ncpu > 1 ? ncpu * 2 : 2);
  reg->started_at = (int64_t)time(NULL);
  reg->started_ns = hs_now_ns();
  reg->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (reg->dirfd < 0)
    return hs_error_set(err, -errno, "scan",
                        "cannot open plugin directory %s: %s", dir,
                        strerror(errno));
  reg->dir = strdup(dir);
  if (!reg->dir) {
    close(reg->dirfd);
    return hs_error_set(err, HS_ENOMEM, "scan", "out of memory");
  }
  int rc = hs_sandbox_pool_open(&reg->pool, loop, opts->log_format,
                                 opts->log_level, err);
  if (rc != 0) {
    free(reg->dir);
    close(reg->dirfd);
    return rc;
  }
  rc = hs_worker_start(&reg->worker, loop, cache);
  if (rc != 0) {
    hs_sandbox_pool_close(reg->pool);
    free(reg->dir);
    close(reg->dirfd);
    return hs_error_set(err, rc, "scan", "cannot start the loader thread: %s",
                        hs_strerror(rc));
  }
  return 0;
}

void hs_registry_close(hs_registry *reg, hs_unload_reason reason) {
  static const char *why[] = {"", "reload", "removed", "shutdown",
                              "host upgrade"};
  for (size_t i = 0; i < reg->nslots; i++) {
    hs_slot *slot = reg->slots[i];
    if (slot->loaded) {
      hs_swap_out(slot, reason);
      hs_log(HS_LOG_INFO, slot->name, "unloaded", "version %s unloaded (%s)",
             slot->version, why[reason <= 4 ? reason : 0]);
    }
    slot_free(reg, slot);
  }
  hs_sandbox_pool_close(reg->pool);
  hs_worker_stop(&reg->worker); /* closes what is still open */
  free(reg->slots);
  free(reg->dir);
  if (reg->dirfd >= 0)
    close(reg->dirfd);
  memset(reg, 0, sizeof(*reg));
  reg->dirfd = -1;
}
