/* registry.c - the plugins of one directory and their pipeline; see
 * registry.h. */
#include "registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "perm.h"
#include "swap.h"

static void slot_kick(hs_slot *slot);
static void start_validation(hs_slot *slot);

/* Returns 1 if file is "STEM<ext>" with a non-empty stem, not hidden. */
static int has_ext(const char *file, const char *ext) {
  size_t n = strlen(file), e = strlen(ext);
  return n > e && file[0] != '.' && strcmp(file + n - e, ext) == 0 &&
         !strchr(file, '/');
}

/* "counter.so" is a prebuilt plugin; ".counter.so" and ".so" are not. */
static int is_plugin_file(const char *file) { return has_ext(file, ".so"); }

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
  slot->snap = (hs_state_snap)HS_STATE_SNAP_INIT;
  slot->file = strdup(file);
  slot->name = strndup(file, strcspn(file, "./")); /* the stem */
  slot->is_dir = file[strlen(file) - 1] == '/';
  slot->source = slot->is_dir || hs_build_is_source(file);
  if (!slot->file || !slot->name) {
    free(slot->file);
    free(slot->name);
    free(slot);
    return NULL;
  }
  hs_api_ctx_init(&slot->ctx, slot->name, reg->dir, reg->loop, 0);
  slot->ctx.on_crash = hs_crash_fault; /* rollback or quarantine */
  slot->ctx.owner = slot;
  hs_crash_init(slot);
  char conf[NAME_MAX + 8];
  snprintf(conf, sizeof(conf), "%s.conf", slot->name);
  hs_config_load(&slot->ctx.config, reg->dirfd, conf);
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

/* Removes what a compile that will not be used wrote into the cache. */
static void drop_output(hs_slot *slot) {
  char dep[sizeof(slot->cand_out)];
  if (!slot->cand_out[0])
    return;
  unlinkat(slot->reg->cache->dirfd, slot->cand_out, 0);
  snprintf(dep, sizeof(dep), "%.*s.d",
           (int)(strlen(slot->cand_out) - 3), slot->cand_out);
  unlinkat(slot->reg->cache->dirfd, dep, 0);
  slot->cand_out[0] = '\0';
}

/* Frees slot; a forced reload still waiting is told why (end, e.g. "was
 * removed"). */
static void slot_free(hs_registry *reg, hs_slot *slot, const char *end) {
  hs_error e;
  if (slot->sb) {
    hs_sandbox_cancel(slot->sb);
    slot->sb = NULL;
    if (slot->compiling)
      reg->compiling--;
    else
      reg->running--;
    slot->compiling = 0;
  }
  drop_output(slot);
  if (slot->opening)
    slot->opening->data = NULL; /* the worker closes what it opened */
  if (slot->copying)
    slot->copying->data = NULL; /* and removes what it copied */
  hs_cache_remove(reg->cache, &slot->candidate);
  hs_error_set(&e, HS_ENOENT, "", "%s", end);
  slot_done(slot, &e);
  hs_api_ctx_release(&slot->ctx);
  hs_config_free(&slot->ctx.config);
  hs_crash_drop(slot);
  hs_state_free(&slot->state);
  hs_state_snap_free(&slot->snap);
  hs_threads_free(&slot->threads);
  hs_threads_free(&slot->born);
  hs_build_free(&slot->build, reg->cache);
  free(slot->map_path);
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
  char end[NAME_MAX + 32];
  snprintf(end, sizeof(end), "%s was removed", slot->file);
  slot_free(reg, slot, end);
}

static void check_idle(hs_registry *reg);

/* The validators: started at init, or at their first use (a host that
 * took over starts them when a plugin first changes, not during the
 * upgrade's pause). Returns 0 or a negative code with err filled. */
static int pool_get(hs_registry *reg, hs_error *err) {
  if (reg->pool)
    return 0;
  return hs_sandbox_pool_open(&reg->pool, reg->loop, reg->opts.log_format,
                              reg->opts.log_level, err);
}

/* Starts the next slots that wait for a free validator; tells the idle
 * callback when nothing is left. */
static void run_queue(hs_registry *reg) {
  for (size_t i = 0; i < reg->nslots && reg->running < reg->max_running;
       i++) {
    hs_slot *slot = reg->slots[i];
    int queued = slot->queued;
    slot->queued = 0;
    if (queued == HS_QUEUED_READY)
      start_validation(slot); /* its candidate is copied already */
    else if (queued)
      slot_kick(slot);
  }
  check_idle(reg);
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

static void swap_opened(hs_slot *slot, hs_open_job *job);

static void on_opened(hs_open_job *job) {
  hs_slot *slot = job->data;
  hs_registry *reg = slot->reg;
  swap_opened(slot, job);
  check_idle(reg);
}

/* The accepted copy is open: swap it in (or start over, if newer content
 * came meanwhile). */
static void swap_opened(hs_slot *slot, hs_open_job *job) {
  hs_registry *reg = slot->reg;
  hs_error err;
  uint64_t pause = 0;
  int was_reset = 0, first = slot->generation == 0;

  slot->opening = NULL;
  if (slot->again) {
    /* Newer content arrived meanwhile: this candidate is stale, whether
     * it opened or not. */
    if (job->rc == 0)
      hs_worker_close(&reg->worker, slot->name, &job->img, &slot->candidate);
    restart(slot);
    return;
  }
  if (job->rc != 0) {
    slot->rejected_hash = slot->candidate.hash;
    hs_cache_remove(reg->cache, &slot->candidate);
    reject(slot, &job->err);
    return;
  }
  hs_error_clear(&err);
  uint64_t candidate_hash = slot->candidate.hash;
  if (hs_swap_in(slot, &job->img, &slot->candidate, &job->state, &pause,
                 &was_reset, &err) != 0) {
    slot->rejected_hash = candidate_hash;
    reject(slot, &err);
    return;
  }
  slot->last.swapped_ns = hs_now_ns() - slot->detect_ns;
  slot->last.pause_ns = pause;

  if (slot->source)
    slot->build_key = slot->cand_key;
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
  if (slot->copy.pins[0])
    hs_log(HS_LOG_WARN, slot->name, "warning",
           "%s cannot be unloaded: %s; each reload keeps the old version in "
           "memory",
           slot->file, slot->copy.pins);
  hs_log(HS_LOG_INFO, slot->name, first ? "loaded" : "reloaded",
         "version %s, state v%" PRIu32 " (%" PRIu32 " bytes), generation "
         "%" PRIu32 ", from %s in %.2f ms (validated in %.2f ms, paused the "
         "loop %.0f us)",
         slot->version, slot->state.version, slot->state.size,
         slot->generation, slot->file, ms(slot->last.swapped_ns),
         ms(slot->last.validated_ns), (double)pause / 1e3);
  /* The ranges of the new version, for the validation of the next one:
   * found now, after the swap, not when that one waits for them. */
  free(slot->map_path);
  slot->map_path = NULL;
  if (slot->copy.path &&
      hs_imagemap_of(&slot->map, slot->img.handle, slot->copy.path) == 0)
    slot->map_path = strdup(slot->copy.path);
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

/* Takes a file (name relative to dirfd) through copy -> (unchanged?) ->
 * validation. For prebuilt plugins it is the watched file, for source
 * plugins the compiler's output in the cache. */
static void on_copied(hs_open_job *job);

static void start_candidate(hs_slot *slot, int dirfd, const char *name,
                            int force) {
  hs_registry *reg = slot->reg;
  hs_error err;

  /* The copy (a read and a hash of the whole file: tens of milliseconds
   * for a large plugin) runs on the copier thread, not in the loop. */
  slot->copy_force = force;
  slot->copying = hs_worker_copy(&reg->copier, dirfd, name, on_copied, slot);
  if (!slot->copying) {
    hs_error_set(&err, HS_ENOMEM, "copy", "out of memory copying %s",
                 slot->file);
    reject(slot, &err);
  }
}

/* The file is in the cache (or could not be copied): unchanged content
 * stops here; new content goes to the sandbox. */
static void candidate_copied(hs_slot *slot, hs_open_job *job) {
  hs_registry *reg = slot->reg;
  hs_error err = job->err;
  int force = slot->copy_force;

  slot->candidate = job->copy;
  memset(&job->copy, 0, sizeof(job->copy));
  if (slot->again) {
    restart(slot); /* newer content came meanwhile */
    return;
  }
  if (job->rc != 0) {
    uint64_t bad = slot->candidate.hash;
    memset(&slot->candidate, 0, sizeof(slot->candidate));
    if (err.code == HS_ENOENT && !slot->done_cb)
      return; /* gone again already; the watcher reports the removal */
    if (bad && !force && bad == slot->rejected_hash) {
      hs_log(HS_LOG_DEBUG, slot->name, "unchanged",
             "%s: same content as before; nothing to do", slot->file);
      return;
    }
    if (bad)
      slot->rejected_hash = bad; /* not an ELF, but known when it comes back */
    reject(slot, &err);
    return;
  }
  int live = slot->loaded && slot->candidate.hash == slot->copy.hash &&
             slot->candidate.size == slot->copy.size;
  if (live)
    hs_error_clear(&slot->last_error); /* back to what runs: nothing wrong */
  if (!force && (live || slot->candidate.hash == slot->rejected_hash)) {
    hs_log(HS_LOG_DEBUG, slot->name, "unchanged",
           "%s: same content as before; nothing to do", slot->file);
    hs_cache_remove(reg->cache, &slot->candidate);
    if (slot->source && slot->loaded)
      slot->build_key = slot->cand_key;
    hs_error_clear(&err);
    slot_done(slot, &err); /* a forced rebuild that made the same bytes */
    return;
  }
  if (hs_crash_holds(slot, slot->candidate.hash, &err)) {
    hs_cache_remove(reg->cache, &slot->candidate); /* a crash loop's */
    reject(slot, &err);
    return;
  }

  start_validation(slot);
}

/* Hands the candidate to the sandbox, or queues it (copied and ready) when
 * every validator is taken. */
static void start_validation(hs_slot *slot) {
  hs_registry *reg = slot->reg;
  hs_error err;

  if (reg->running >= reg->max_running) {
    slot->queued = HS_QUEUED_READY;
    return;
  }
  hs_sandbox_req req = {
      .name = slot->name,
      .dir = reg->dir,
      .file = slot->file,
      .path = slot->candidate.path,
      /* The live state, or one kept after a failed rollback. */
      .state = slot->state.version ? &slot->state : NULL,
      .snap = &slot->snap,
      .reason = slot->state.version ? HS_LOAD_RELOAD : HS_LOAD_START,
      .allow_reset = reg->opts.allow_state_reset,
      .limits = reg->opts.limits,
      .log_format = reg->opts.log_format,
      .log_level = reg->opts.log_level,
  };
  /* The validator looks for pointers into the live version in the state:
   * its ranges as found after its swap, unless another copy went live
   * since (a rollback, an upgrade). */
  hs_imagemap old;
  if (slot->loaded && slot->map_path && slot->copy.path &&
      strcmp(slot->map_path, slot->copy.path) == 0) {
    req.old_map = &slot->map;
    req.old_version = slot->version;
  } else if (slot->loaded &&
             hs_imagemap_of(&old, slot->img.handle, slot->copy.path) == 0) {
    req.old_map = &old;
    req.old_version = slot->version;
  }
  if (pool_get(reg, &err) != 0 ||
      hs_sandbox_start(&slot->sb, reg->pool, &req, on_verdict, slot, &err) !=
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

static void on_copied(hs_open_job *job) {
  hs_slot *slot = job->data;
  hs_registry *reg = slot->reg;
  slot->copying = NULL;
  candidate_copied(slot, job);
  run_queue(reg);
}

/* Shows what the compiler printed: as it printed it on a terminal or in
 * text logs (colours and all), as one log line in JSON logs. */
static void show_compiler_output(hs_slot *slot, const hs_compile_result *r) {
  if (r->output_len == 0)
    return;
  if (slot->reg->opts.log_format == HS_LOG_JSON) {
    hs_log(r->ok ? HS_LOG_WARN : HS_LOG_ERROR, slot->name, "compiler", "%.*s",
           (int)r->output_len, r->output);
    return;
  }
  for (size_t off = 0; off < r->output_len;) {
    ssize_t n = write(2, r->output + off, r->output_len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    off += (size_t)n;
  }
  if (r->output[r->output_len - 1] != '\n' && write(2, "\n", 1) < 0)
    return;
}

static void on_compiled(hs_sandbox *sb, const hs_compile_result *r,
                        void *data) {
  hs_slot *slot = data;
  hs_registry *reg = slot->reg;
  char dep[PATH_MAX];
  (void)sb;

  slot->sb = NULL;
  slot->compiling = 0;
  reg->compiling--;
  if (slot->again) {
    drop_output(slot);
    slot->again = 0;
    slot->detect_ns = hs_now_ns();
    slot_kick(slot);
    run_queue(reg);
    return;
  }
  show_compiler_output(slot, r);
  if (!r->ok) {
    slot->build.failed_key = slot->cand_key;
    drop_output(slot);
    reject(slot, &r->err);
    run_queue(reg);
    return;
  }
  if (r->output_len)
    hs_log(HS_LOG_WARN, slot->name, "warning",
           "%s compiled with warnings (they do not block; "
           "--plugin-werror makes them)",
           slot->file);
  hs_log(HS_LOG_DEBUG, slot->name, "compiled", "%s compiled in %.2f ms",
         slot->file, ms(r->elapsed_ns));
  /* Now the headers it read are known: key the output by them too. */
  snprintf(dep, sizeof(dep), "%s/%.*s.d", reg->cache->dir,
           (int)(strlen(slot->cand_out) - 3), slot->cand_out);
  hs_build_read_deps(&slot->build, dep, reg->dir);
  hs_error err;
  uint64_t key;
  int krc = hs_build_key(&reg->build_env, &slot->build, reg->dirfd,
                         slot->name, slot->is_dir, &key, &err);
  if (krc == 0)
    slot->cand_key = key;
  if (krc == HS_EINSECURE) { /* a header it read */
    drop_output(slot);
    reject(slot, &err);
    run_queue(reg);
    return;
  }
  char *out = strdup(slot->cand_out);
  if (!out) {
    drop_output(slot);
    hs_error_set(&err, HS_ENOMEM, "compile", "out of memory");
    reject(slot, &err);
    run_queue(reg);
    return;
  }
  hs_build_store(&slot->build, reg->cache, slot->cand_key, out);
  slot->cand_out[0] = '\0'; /* the build cache owns it now */
  start_candidate(slot, reg->cache->dirfd, out, 0);
  run_queue(reg);
}

/* Source plugins: the output for the current inputs, from the build cache
 * or from a compile in the sandbox. */
static void build_candidate(hs_slot *slot, int force) {
  hs_registry *reg = slot->reg;
  hs_error err;
  uint64_t key;
  char out[PATH_MAX], dep[PATH_MAX];

  hs_error_clear(&err);
  if (!reg->can_build) {
    hs_error_set(&err, HS_ENOENT, "compile",
                 "%s cannot be compiled: hotswap.h was not found (set "
                 "HOTSWAP_INCLUDE)",
                 slot->file);
    reject(slot, &err);
    return;
  }
  if (hs_build_key(&reg->build_env, &slot->build, reg->dirfd, slot->name,
                   slot->is_dir, &key, &err) != 0) {
    if (err.code != HS_ENOENT)
      reject(slot, &err);
    return;
  }
  if (!force && slot->loaded && key == slot->build_key) {
    hs_error_clear(&slot->last_error); /* back to what runs */
    hs_log(HS_LOG_DEBUG, slot->name, "unchanged",
           "%s: same sources as the live version; nothing to do", slot->file);
    return;
  }
  if (!force && key == slot->build.failed_key) {
    hs_log(HS_LOG_DEBUG, slot->name, "unchanged",
           "%s: the same sources failed to compile before", slot->file);
    return;
  }
  slot->cand_key = key;
  const char *cached = hs_build_lookup(&slot->build, key);
  if (cached) {
    hs_log(HS_LOG_DEBUG, slot->name, "cached",
           "%s: built before with the same inputs; no compile", slot->file);
    start_candidate(slot, reg->cache->dirfd, cached, force);
    return;
  }
  if (reg->compiling >= reg->max_compiling) {
    slot->queued = 1;
    return;
  }
  snprintf(slot->cand_out, sizeof(slot->cand_out), "build-%.32s-%llu.so",
           slot->name, (unsigned long long)hs_cache_next(reg->cache));
  snprintf(out, sizeof(out), "%s/%s", reg->cache->dir, slot->cand_out);
  snprintf(dep, sizeof(dep), "%s/%.*s.d", reg->cache->dir,
           (int)(strlen(slot->cand_out) - 3), slot->cand_out);
  char **argv = hs_build_argv(&reg->build_env, reg->dirfd, reg->dir,
                              slot->name, slot->is_dir, out, dep);
  hs_compile_req req = {slot->file, reg->dir, argv, reg->opts.build_limits};
  if (!argv) {
    hs_error_set(&err, HS_ENOMEM, "compile", "out of memory");
  } else if (pool_get(reg, &err) == 0 &&
             hs_sandbox_compile(&slot->sb, reg->pool, &req, on_compiled,
                                slot, &err) == 0) {
    slot->compiling = 1;
    reg->compiling++;
    hs_log(HS_LOG_INFO, slot->name, "compiling", "%s", slot->file);
  }
  hs_build_argv_free(argv);
  if (!slot->sb) {
    slot->cand_out[0] = '\0';
    reject(slot, &err);
  }
}

/* Takes the slot's file through the pipeline, unless it is busy (then the
 * change is remembered) or the validators are all taken (then it waits). */
static void slot_kick(hs_slot *slot) {
  hs_registry *reg = slot->reg;

  if (slot->sb || slot->opening || slot->copying) {
    slot->again = 1;
    return;
  }
  if (reg->running >= reg->max_running) {
    slot->queued = 1;
    return;
  }
  int force = slot->force;
  slot->force = 0;
  if (slot->source)
    build_candidate(slot, force);
  else
    start_candidate(slot, reg->dirfd, slot->file, force);
}

/* Starts the pipeline for slot as a change seen now. */
static void slot_changed(hs_slot *slot) {
  if (slot->queued == HS_QUEUED_READY) {
    /* The copied candidate waiting for a validator is stale now. */
    hs_cache_remove(slot->reg->cache, &slot->candidate);
    slot->queued = 1;
  }
  if (!slot->sb && !slot->opening && !slot->copying && !slot->queued)
    slot->detect_ns = hs_now_ns();
  if (!slot->queued)
    slot_kick(slot);
}

/* A source plugin's flags file or a header changed: rebuild exactly the
 * source plugins it concerns. */
static void inputs_changed(hs_registry *reg, const char *file,
                           const hs_slot *except) {
  char path[PATH_MAX];
  size_t stem = strlen(file) - strlen(".flags");
  snprintf(path, sizeof(path), "%s/%s", reg->dir, file);
  for (size_t i = 0; i < reg->nslots; i++) {
    hs_slot *slot = reg->slots[i];
    if (!slot->source || slot == except)
      continue;
    if (has_ext(file, ".flags") ? strlen(slot->name) == stem &&
                                      !strncmp(slot->name, file, stem)
                                : hs_build_depends_on(&slot->build, path))
      slot_changed(slot);
  }
}

/* A directory plugin NAME/ or something in it changed (file is "NAME" or
 * "NAME/entry"). */
static void dir_changed(hs_registry *reg, const char *file) {
  char stem[NAME_MAX + 1], slash[NAME_MAX + 2];
  const char *leaf = strchr(file, '/');
  snprintf(stem, sizeof(stem), "%.*s",
           (int)(leaf ? (size_t)(leaf - file) : strlen(file)), file);
  if (leaf && (leaf[1] == '.' || strchr(leaf + 1, '/')))
    return;
  hs_slot *slot = hs_registry_find(reg, stem);
  if (leaf && has_ext(leaf + 1, ".h"))
    inputs_changed(reg, file, slot); /* others may include it too */
  if (slot && slot->is_dir) {
    slot_changed(slot);
    return;
  }
  if (slot || !hs_build_is_dir_plugin(reg->dirfd, stem))
    return; /* not (yet) a plugin directory, or NAME.c is the plugin */
  snprintf(slash, sizeof(slash), "%s/", stem);
  if (!(slot = slot_new(reg, slash))) {
    hs_log(HS_LOG_ERROR, NULL, "error", "out of memory for %s", slash);
    return;
  }
  slot_changed(slot);
}

/* NAME.conf changed, appeared or went away: the plugin's on_config() is
 * told, or, without one, the plugin is reloaded (with the same code, so
 * that its load() reads the new values). */
static void config_changed(hs_registry *reg, const char *file) {
  char stem[NAME_MAX + 1];
  snprintf(stem, sizeof(stem), "%.*s", (int)(strlen(file) - 5), file);
  hs_slot *slot = hs_registry_find(reg, stem);
  if (!slot)
    return;
  uint64_t before = slot->ctx.config.hash;
  int rc = hs_config_load(&slot->ctx.config, reg->dirfd, file);
  if (rc != 0)
    hs_log(HS_LOG_WARN, slot->name, "warning", "cannot read %s: %s", file,
           hs_strerror(rc));
  if (slot->ctx.config.hash == before)
    return;
  const hs_plugin *d = slot->loaded ? slot->img.desc : NULL;
  if (d && HS_DESC_HAS(d, on_config) && d->on_config) {
    hs_log(HS_LOG_INFO, slot->name, "config", "%s changed; on_config()",
           file);
    hs_guard_fault f;
    if (hs_guard_config(&slot->ctx, &f) != 0)
      hs_crash_fault(&slot->ctx, &f);
    return;
  }
  if (!slot->loaded && slot->generation == 0 && !slot->last_error.code)
    return; /* its first load is under way and reads the new file */
  hs_log(HS_LOG_INFO, slot->name, "config", "%s changed; reloading %s", file,
         slot->name);
  slot->force = 1;
  slot_changed(slot);
}

void hs_registry_changed(hs_registry *reg, const char *file) {
  int source = hs_build_is_source(file);
  if (has_ext(file, ".conf")) {
    config_changed(reg, file);
    return;
  }
  struct stat st;
  if (strchr(file, '/') ||
      (file[0] != '.' &&
       fstatat(reg->dirfd, file, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
       S_ISDIR(st.st_mode))) {
    dir_changed(reg, file);
    return;
  }
  if (has_ext(file, ".flags") || has_ext(file, ".h")) {
    inputs_changed(reg, file, NULL);
    return;
  }
  if (!source && !is_plugin_file(file))
    return;
  char stem[NAME_MAX + 1];
  snprintf(stem, sizeof(stem), "%.*s", (int)strcspn(file, "."), file);
  hs_slot *slot = hs_registry_find(reg, stem);
  if (slot && !source && slot->source) {
    hs_log(HS_LOG_DEBUG, slot->name, "ignored",
           "%s is ignored: %s is built from %s", file, slot->name,
           slot->file);
    return;
  }
  if (slot && source && !slot->source) {
    /* NAME.c appeared beside a loaded NAME.so: from now on the source is
     * the plugin; the live version runs until the first build replaces
     * it. */
    char *f = strdup(file);
    if (!f)
      return;
    free(slot->file);
    slot->file = f;
    slot->source = 1;
    hs_log(HS_LOG_INFO, slot->name, "source",
           "%s now builds %s; %s.so is ignored", file, slot->name, slot->name);
  }
  if (!slot && !(slot = slot_new(reg, file))) {
    hs_log(HS_LOG_ERROR, NULL, "error", "out of memory for %s", file);
    return;
  }
  slot_changed(slot);
}

void hs_registry_removed(hs_registry *reg, const char *file) {
  char stem[NAME_MAX + 1], so[NAME_MAX + 4], slash[NAME_MAX + 2];
  const char *leaf = strchr(file, '/');
  if (leaf && leaf[1]) {
    /* Inside a directory plugin: rebuild it, or drop it with no .c left. */
    snprintf(stem, sizeof(stem), "%.*s", (int)(leaf - file), file);
    hs_slot *slot = hs_registry_find(reg, stem);
    if (slot && slot->is_dir && !hs_build_is_dir_plugin(reg->dirfd, stem)) {
      snprintf(slash, sizeof(slash), "%s/", stem);
      hs_registry_removed(reg, slash);
    } else if (slot && slot->is_dir) {
      dir_changed(reg, file);
    }
    return;
  }
  if (has_ext(file, ".flags") || has_ext(file, ".h")) {
    inputs_changed(reg, file, NULL);
    return;
  }
  if (has_ext(file, ".conf")) {
    config_changed(reg, file);
    return;
  }
  snprintf(slash, sizeof(slash), "%.*s/", (int)strcspn(file, "/"), file);
  hs_slot *slot = find_file(reg, file);
  if (!slot)
    slot = find_file(reg, slash); /* a directory plugin went away */
  if (!slot)
    return;
  if (slot->loaded) {
    hs_swap_out(slot, HS_UNLOAD_REMOVED);
    hs_log(HS_LOG_INFO, slot->name, "unloaded",
           "%s was removed; version %s unloaded", file, slot->version);
  }
  snprintf(stem, sizeof(stem), "%s", slot->name);
  int source = slot->source;
  slot_drop(reg, slot);
  run_queue(reg);
  /* Without its source, a NAME.so beside it is the plugin again. */
  snprintf(so, sizeof(so), "%s.so", stem);
  if (source && faccessat(reg->dirfd, so, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
    hs_registry_changed(reg, so);
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
  /* Sources first, so that NAME.c takes NAME before NAME.so does. */
  for (int pass = 0; pass < 2; pass++) {
    rewinddir(d);
    while ((e = readdir(d)) != NULL) {
      int src = hs_build_is_source(e->d_name) ||
                (e->d_type == DT_DIR && e->d_name[0] != '.');
      if (src == (pass == 0) && (pass == 0 || is_plugin_file(e->d_name)))
        hs_registry_changed(reg, e->d_name);
    }
  }
  closedir(d);
  /* Plugins whose file vanished while we were not looking. */
  for (size_t i = reg->nslots; i-- > 0;) {
    hs_slot *slot = reg->slots[i];
    if (faccessat(reg->dirfd, slot->file, F_OK, AT_SYMLINK_NOFOLLOW) != 0)
      hs_registry_removed(reg, slot->file);
  }
  check_idle(reg); /* nothing to do at all is "ready" too */
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
  if (reg->running || reg->compiling)
    return 0;
  for (size_t i = 0; i < reg->nslots; i++)
    if (reg->slots[i]->sb || reg->slots[i]->opening ||
        reg->slots[i]->copying || reg->slots[i]->queued)
      return 0;
  return 1;
}

void hs_registry_on_idle(hs_registry *reg, hs_idle_cb cb, void *data) {
  reg->idle_cb = cb;
  reg->idle_data = data;
}

uint64_t hs_registry_leaked(hs_registry *reg, const char *name,
                            uint64_t bytes) {
  hs_slot *slot = hs_registry_find(reg, name);
  reg->leaked_bytes += bytes;
  if (!slot)
    return bytes;
  slot->leaked_images++;
  slot->leaked_bytes += bytes;
  return slot->leaked_bytes;
}

static uint64_t on_leak(void *data, const char *name, uint64_t bytes) {
  return hs_registry_leaked(data, name, bytes);
}

void hs_registry_count(const hs_registry *reg, unsigned *live,
                       unsigned *failed) {
  *live = *failed = 0;
  for (size_t i = 0; i < reg->nslots; i++) {
    *live += reg->slots[i]->loaded != 0;
    *failed += reg->slots[i]->last_error.code != 0;
  }
}

/* Tells the idle callback when the last piece of work is done. */
static void check_idle(hs_registry *reg) {
  if (reg->idle_cb && hs_registry_idle(reg))
    reg->idle_cb(reg, reg->idle_data);
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
  reg->max_compiling = (unsigned)(ncpu > 1 ? ncpu : 1);
  reg->started_at = (int64_t)time(NULL);
  reg->started_ns = hs_now_ns();
  reg->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (reg->dirfd < 0)
    return hs_error_set(err, -errno, "scan",
                        "cannot open plugin directory %s: %s", dir,
                        strerror(errno));
  int rc;
  if (!opts->allow_insecure &&
      (rc = hs_perm_check_fd(reg->dirfd, AT_FDCWD, dir, "scan", err)) != 0) {
    close(reg->dirfd);
    return rc;
  }
  /* Files from the plugin directory are checked as they are read. */
  cache->allow_insecure = opts->allow_insecure;
  reg->dir = strdup(dir);
  if (!reg->dir) {
    close(reg->dirfd);
    return hs_error_set(err, HS_ENOMEM, "scan", "out of memory");
  }
  hs_error berr;
  reg->can_build = hs_build_env_init(&reg->build_env, opts->color,
                                     opts->plugin_werror, &opts->build_limits,
                                     &berr) == 0;
  reg->build_env.allow_insecure = opts->allow_insecure;
  if (!reg->can_build)
    hs_log(HS_LOG_WARN, NULL, "warning",
           "plugin sources (*.c) will not be compiled: %s", berr.msg);
  rc = opts->lazy_pool ? 0 : pool_get(reg, err);
  if (rc != 0) {
    free(reg->dir);
    close(reg->dirfd);
    return rc;
  }
  rc = hs_worker_start(&reg->worker, loop, cache);
  if (rc == 0 && (rc = hs_worker_start(&reg->copier, loop, cache)) != 0)
    hs_worker_stop(&reg->worker);
  reg->worker.on_leak = on_leak;
  reg->worker.leak_data = reg;
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
  }
  /* Freed only once all are out: an unload looks at the other slots. */
  for (size_t i = 0; i < reg->nslots; i++)
    slot_free(reg, reg->slots[i], "the host is shutting down");
  hs_sandbox_pool_close(reg->pool);
  hs_worker_stop(&reg->copier); /* removes copies no one waits for */
  reg->worker.on_leak = NULL;   /* the slots are gone */
  hs_worker_stop(&reg->worker); /* closes what is still open */
  hs_build_env_free(&reg->build_env);
  free(reg->slots);
  free(reg->dir);
  if (reg->dirfd >= 0)
    close(reg->dirfd);
  memset(reg, 0, sizeof(*reg));
  reg->dirfd = -1;
}

/* ---- host upgrade (upgrade.h, handoff.h) ---- */

uint32_t hs_registry_max_abi(const hs_registry *reg) {
  uint32_t abi = 0;
  for (size_t i = 0; i < reg->nslots; i++) {
    const hs_slot *slot = reg->slots[i];
    if (slot->loaded && slot->img.desc->abi_version > abi)
      abi = slot->img.desc->abi_version;
  }
  return abi;
}

void hs_registry_suspend(hs_registry *reg) {
  for (size_t i = 0; i < reg->nslots; i++)
    hs_swap_detach(reg->slots[i]);
  /* The validators' zygote is a child of this image: it goes now (the new
   * image starts its own), and comes back in hs_registry_resume. */
  hs_sandbox_pool_close(reg->pool);
  reg->pool = NULL;
}

int hs_registry_resume(hs_registry *reg, hs_error *err) {
  for (size_t i = 0; i < reg->nslots; i++) {
    hs_slot *slot = reg->slots[i];
    hs_error e;
    if (!slot->detached)
      continue;
    if (hs_swap_attach(slot, HS_LOAD_ROLLBACK, &e) != 0) {
      hs_log(HS_LOG_ERROR, slot->name, "error",
             "after the failed upgrade: %s; the plugin is not running (its "
             "state is kept)",
             e.msg);
      slot->last_error = e;
    }
  }
  return pool_get(reg, err);
}

int hs_registry_save(const hs_registry *reg, hs_handoff *ho) {
  ho->owned = 0;
  ho->nslots = 0;
  ho->slots = reg->nslots ? calloc(reg->nslots, sizeof(*ho->slots)) : NULL;
  if (reg->nslots && !ho->slots)
    return HS_ENOMEM;
  for (size_t i = 0; i < reg->nslots; i++) {
    const hs_slot *slot = reg->slots[i];
    hs_handoff_slot *s = &ho->slots[ho->nslots++];
    size_t n = 0;

    s->file = slot->file;
    s->loaded = slot->loaded;
    s->copy_path = slot->loaded ? slot->copy.path : (char *)"";
    s->copy_hash = slot->loaded ? slot->copy.hash : 0;
    s->copy_size = slot->loaded ? slot->copy.size : 0;
    s->version = (char *)slot->version;
    s->generation = slot->generation;
    s->reloads = slot->reloads;
    s->loaded_at = slot->loaded_at;
    s->build_key = slot->build_key;
    s->rejected_hash = slot->rejected_hash;
    hs_crash_save(slot, &s->crash);
    s->state = slot->state;
    s->next_timer_id = slot->ctx.next_timer_id;
    for (const hs_fdreg *r = slot->ctx.fds; r; r = r->next)
      n++;
    s->fds = n ? calloc(n, sizeof(*s->fds)) : NULL;
    if (n && !s->fds)
      return HS_ENOMEM;
    for (const hs_fdreg *r = slot->ctx.fds; r; r = r->next) {
      hs_handoff_fd *f = &s->fds[s->nfds++];
      f->fd = r->fd;
      f->events = r->events;
      f->token = r->token;
      snprintf(f->name, sizeof(f->name), "%s", r->name);
    }
    n = 0;
    for (const hs_timerreg *r = slot->ctx.timers; r; r = r->next)
      n++;
    s->timers = n ? calloc(n, sizeof(*s->timers)) : NULL;
    if (n && !s->timers)
      return HS_ENOMEM;
    for (const hs_timerreg *r = slot->ctx.timers; r; r = r->next) {
      hs_handoff_timer *t = &s->timers[s->ntimers++];
      t->id = r->id;
      t->token = r->token;
      t->repeat_ms = r->repeat_ms;
      t->due_ns = r->timer.due_ns;
    }
    s->ndeps = slot->build.ndeps;
    s->deps = slot->build.deps; /* borrowed like the strings */
    s->outputs = slot->build.nout
                     ? calloc(slot->build.nout, sizeof(*s->outputs))
                     : NULL;
    if (slot->build.nout && !s->outputs)
      return HS_ENOMEM;
    for (unsigned j = 0; j < slot->build.nout; j++) {
      s->outputs[s->noutputs].key = slot->build.out[j].key;
      s->outputs[s->noutputs++].name = slot->build.out[j].name;
    }
    s->failed_key = slot->build.failed_key;
  }
  return 0;
}

/* Takes one plugin over from the previous image: its registrations, its
 * state, and its live version (opened from the same cache copy, loaded
 * with reason UPGRADE). */
static void adopt_slot(hs_registry *reg, hs_handoff_slot *s) {
  hs_slot *slot = slot_new(reg, s->file);
  hs_error err;

  if (!slot) {
    hs_log(HS_LOG_ERROR, NULL, "error",
           "out of memory taking %s over; it starts anew", s->file);
    return;
  }
  snprintf(slot->version, sizeof(slot->version), "%s", s->version);
  slot->generation = s->generation;
  slot->reloads = s->reloads;
  slot->loaded_at = s->loaded_at;
  slot->build_key = s->build_key;
  slot->rejected_hash = s->rejected_hash;
  hs_crash_restore(slot, &s->crash);
  hs_state_move(&slot->state, &s->state);
  slot->ctx.next_timer_id = s->next_timer_id;
  slot->build.deps = s->deps; /* taken over, with the outputs' names */
  slot->build.ndeps = s->ndeps;
  s->deps = NULL;
  s->ndeps = 0;
  for (size_t i = 0; i < s->noutputs && i < HS_BUILD_KEEP; i++)
    hs_build_store(&slot->build, reg->cache, s->outputs[i].key,
                   s->outputs[i].name);
  s->noutputs = 0;
  slot->build.failed_key = s->failed_key;
  for (size_t i = 0; i < s->nfds; i++) {
    hs_handoff_fd *f = &s->fds[i];
    int fl = fcntl(f->fd, F_GETFD);
    /* Inherited by design; not by the validators and compilers. */
    if (fl < 0 || fcntl(f->fd, F_SETFD, fl | FD_CLOEXEC) != 0 ||
        hs_api_ctx_adopt_fd(&slot->ctx, f->fd, f->events, f->token,
                            f->name) != 0)
      hs_log(HS_LOG_ERROR, slot->name, "error",
             "fd %d it watched did not survive the upgrade: %s", f->fd,
             strerror(errno));
  }
  for (size_t i = 0; i < s->ntimers; i++) {
    hs_handoff_timer *t = &s->timers[i];
    if (hs_api_ctx_adopt_timer(&slot->ctx, t->id, t->token, t->repeat_ms,
                               t->due_ns) != 0)
      hs_log(HS_LOG_ERROR, slot->name, "error",
             "timer %lld did not survive the upgrade: out of memory",
             (long long)t->id);
  }
  if (!s->loaded)
    return; /* not running before either: the scan tries its file */

  slot->copy.path = strdup(s->copy_path);
  slot->copy.hash = s->copy_hash;
  slot->copy.size = s->copy_size;
  if (!slot->copy.path ||
      hs_loader_open(&slot->img, s->copy_path, slot->file, &err) != 0) {
    if (!slot->copy.path)
      hs_error_set(&err, HS_ENOMEM, "open", "out of memory");
    hs_log(HS_LOG_ERROR, slot->name, "rejected",
           "version %s cannot be loaded by this host after the upgrade: %s "
           "(its state is kept for the next version)",
           s->version, err.msg);
    slot->last_error = err;
    hs_cache_remove(reg->cache, &slot->copy);
    return;
  }
  slot->loaded = 1;
  if (hs_swap_attach(slot, HS_LOAD_UPGRADE, &err) != 0) {
    hs_log(HS_LOG_ERROR, slot->name, "error",
           "%s after the upgrade; the plugin is not running (its state is "
           "kept)",
           err.msg);
    slot->last_error = err;
    return;
  }
  hs_log(HS_LOG_INFO, slot->name, "resumed",
         "version %s, state v%" PRIu32 " (%" PRIu32 " bytes), %zu fd%s and "
         "%zu timer%s carried over the upgrade",
         slot->version, slot->state.version, slot->state.size, s->nfds,
         s->nfds == 1 ? "" : "s", s->ntimers, s->ntimers == 1 ? "" : "s");
}

void hs_registry_adopt(hs_registry *reg, hs_handoff *ho) {
  for (size_t i = 0; i < ho->nslots; i++)
    adopt_slot(reg, &ho->slots[i]);
}
