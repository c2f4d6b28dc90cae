/*
 * main.c - wires the modules into the hotswap command: the host
 * (hotswap [OPTIONS] PLUGIN_DIR), its control clients (status, reload) and
 * the validator mode the host spawns for itself.
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdarg.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "cache.h"
#include "ctl.h"
#include "guard.h"
#include "log.h"
#include "loop.h"
#include "notify.h"
#include "options.h"
#include "perm.h"
#include "registry.h"
#include "sandbox.h"
#include "scaffold.h"
#include "status.h"
#include "upgrade.h"
#include "watch.h"

typedef struct host {
  hs_options opt;
  char dir[PATH_MAX];
  char *control;
  hs_loop loop;
  hs_cache cache;
  hs_registry reg;
  hs_watch watch;
  hs_ctl ctl;
  hs_notify notify;    /* systemd, when run as a Type=notify service */
  int ready_pending;   /* READY=1 goes out at the next idle */

  /* host upgrades (upgrade.h) */
  char **argv;               /* as started: a re-exec runs with the same */
  hs_handoff handoff;        /* what the previous image handed over */
  int handed_over;           /* 1: this image took over from a previous */
  hs_upgrade up;             /* the host's own executable */
  int up_ok;                 /* up is initialised */
  int upgrade_ready;         /* a checked binary waits for an idle moment */
  hs_timer upgrade_timer;    /* re-executes from the loop, not a callback */
  hs_ctl_conn *upgrade_conn; /* `hotswap upgrade` waiting for the check */
  uint32_t reexecs;          /* re-executions so far */
  int64_t reexec_at;         /* wall clock (s) of the last */
  uint64_t reexec_pause_ns;  /* how long the last paused the plugins */
  hs_error upgrade_error;    /* the last refusal (code 0: none) */
} host;

/* The pipeline has settled: tell systemd (READY=1 after the first scan or
 * a rescan, and a one-line STATUS= each time). The first time, the plugins
 * present at start have loaded: fds systemd handed back that none of them
 * took are closed (later calls find none left). */
static void on_idle(hs_registry *reg, void *data) {
  host *h = data;
  unsigned live, failed;
  hs_notify_drop_untaken(&h->notify);
  hs_registry_count(reg, &live, &failed);
  hs_notify_send(&h->notify, "%sSTATUS=%u plugin%s live, %u rejected",
                 h->ready_pending ? "READY=1\n" : "", live,
                 live == 1 ? "" : "s", failed);
  h->ready_pending = 0;
  if (h->upgrade_ready)
    hs_loop_timer_start(&h->loop, &h->upgrade_timer, 0, 0);
}

static void on_watch(hs_watch *w, const char *name, hs_watch_event ev) {
  host *h = w->data;
  if (ev == HS_WATCH_CHANGED)
    hs_registry_changed(&h->reg, name);
  else if (ev == HS_WATCH_REMOVED)
    hs_registry_removed(&h->reg, name);
  else
    hs_registry_scan(&h->reg);
}

/* ---- host upgrade: check the new executable, then re-execute ---- */

static void upgrade_reply(host *h, int ok, const char *fmt, ...)
    HS_PRINTF_(3, 4);

/* Answers a waiting `hotswap upgrade`, if any. */
static void upgrade_reply(host *h, int ok, const char *fmt, ...) {
  char msg[700];
  va_list ap;
  if (!h->upgrade_conn)
    return;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  hs_ctl_reply(h->upgrade_conn, ok, msg,
               (size_t)(n < (int)sizeof(msg) ? n : (int)sizeof(msg) - 1));
  h->upgrade_conn = NULL;
}

static void on_upgrade_checked(hs_upgrade *up, const hs_error *err,
                               void *data) {
  host *h = data;
  if (err->code != 0) {
    h->upgrade_error = *err;
    hs_log(HS_LOG_ERROR, NULL, "upgrade",
           "refused: %s; hotswap %s keeps running", err->msg,
           HS_VERSION_STRING);
    upgrade_reply(h, 0, "upgrade refused: %s\n", err->msg);
    return;
  }
  hs_error_clear(&h->upgrade_error);
  int idle = hs_registry_idle(&h->reg);
  hs_log(HS_LOG_INFO, NULL, "upgrade",
         "%s passed its check (hotswap %s, plugin ABI %d); re-executing%s",
         up->path, up->new_version, up->new_abi,
         idle ? "" : " once the reloads under way are done");
  upgrade_reply(h, 1, "re-executing %s (hotswap %s, plugin ABI %d)\n",
                up->path, up->new_version, up->new_abi);
  h->upgrade_ready = 1;
  hs_loop_timer_start(&h->loop, &h->upgrade_timer, 0, 0);
}

/* Starts a check of the executable: forced (SIGUSR2, `hotswap upgrade`)
 * even when its content is what runs. */
static int upgrade_request(host *h) {
  if (!h->up_ok)
    return HS_ENOENT;
  if (h->upgrade_ready)
    return 0; /* a checked binary is about to run */
  return hs_upgrade_check(&h->up, 1, hs_registry_max_abi(&h->reg));
}

/* Unloads every plugin (reason UPGRADE), writes the handoff and execs the
 * checked binary. Returns only if the execve failed: then every plugin is
 * loaded again (reason ROLLBACK) and this image goes on. */
static void reexec(host *h) {
  hs_handoff ho;
  hs_error err, e2;
  int fd = -1, *keep = NULL;
  size_t nkeep = 0, cap = 1;
  uint64_t t0 = hs_now_ns();

  hs_notify_send(&h->notify,
                 "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=upgrading to "
                 "hotswap %s",
                 (unsigned long long)(t0 / 1000), h->up.new_version);
  hs_log(HS_LOG_INFO, NULL, "upgrade",
         "unloading every plugin (host upgrade) and re-executing %s",
         h->up.path);
  hs_registry_suspend(&h->reg);

  memset(&ho, 0, sizeof(ho));
  ho.host_version = (char *)HS_VERSION_STRING;
  ho.reexecs = h->reexecs + 1;
  ho.started_at = h->reg.started_at;
  ho.started_ns = h->reg.started_ns;
  ho.reexec_at = (int64_t)time(NULL);
  ho.paused_ns = t0;
  ho.self_path = h->up.path;
  ho.self_hash = h->up.cand_hash;
  ho.plugin_dir = h->dir;
  ho.cache_dir = h->cache.dir;
  ho.cache_next = h->cache.next;
  ho.control_fd = h->ctl.fd;
  ho.control_path = h->control;
  if (hs_registry_save(&h->reg, &ho) != 0) {
    hs_error_set(&err, HS_ENOMEM, "upgrade", "out of memory for the handoff");
    goto failed;
  }
  for (size_t i = 0; i < ho.nslots; i++)
    cap += ho.slots[i].nfds;
  keep = malloc(cap * sizeof(*keep));
  if (!keep) {
    hs_error_set(&err, HS_ENOMEM, "upgrade", "out of memory for the handoff");
    goto failed;
  }
  keep[nkeep++] = h->ctl.fd;
  for (size_t i = 0; i < ho.nslots; i++)
    for (size_t j = 0; j < ho.slots[i].nfds; j++)
      keep[nkeep++] = ho.slots[i].fds[j].fd;
  ho.version = h->up.new_handoff; /* the newest format the new image reads */
  if (ho.version && ho.version < HS_HANDOFF_VERSION)
    hs_log(HS_LOG_WARN, NULL, "upgrade",
           "%s reads handoff formats up to %u: the plugins' crash records "
           "are not carried over",
           h->up.path, ho.version);
  fd = hs_handoff_write(&ho, &err);
  if (fd < 0)
    goto failed;
  hs_upgrade_exec(&h->up, h->argv, fd, keep, nkeep, &err);

failed:
  if (fd >= 0)
    close(fd);
  free(keep);
  hs_handoff_free(&ho);
  hs_upgrade_drop(&h->up);
  h->upgrade_error = err;
  hs_log(HS_LOG_ERROR, NULL, "upgrade",
         "re-executing failed: %s; every plugin is loaded again and hotswap "
         "%s keeps running",
         err.msg, HS_VERSION_STRING);
  if (hs_registry_resume(&h->reg, &e2) != 0)
    hs_log(HS_LOG_ERROR, NULL, "error", "%s: new versions cannot be "
           "validated until a restart", e2.msg);
  hs_notify_send(&h->notify, "READY=1");
}

static void on_upgrade_timer(hs_timer *t) {
  host *h = t->data;
  /* Reloads under way finish first; on_idle comes back here. */
  if (!h->upgrade_ready || !hs_registry_idle(&h->reg))
    return;
  h->upgrade_ready = 0;
  reexec(h);
}

static void on_signal(hs_loop *loop, int signum, void *data) {
  host *h = data;
  if (signum == SIGUSR2) {
    hs_log(HS_LOG_INFO, NULL, "upgrade", "SIGUSR2: upgrade requested");
    if (upgrade_request(h) == HS_ENOENT)
      hs_log(HS_LOG_ERROR, NULL, "upgrade",
             "refused: the host's own executable was not found at start");
    return;
  }
  if (signum == SIGHUP) {
    hs_log(HS_LOG_INFO, NULL, "rescan", "SIGHUP: rescanning %s", h->dir);
    hs_notify_send(&h->notify, "RELOADING=1");
    h->ready_pending = 1;
    hs_registry_scan(&h->reg);
    return;
  }
  hs_notify_send(&h->notify, "STOPPING=1");
  hs_log(HS_LOG_INFO, NULL, "stopping", "%s: unloading every plugin",
         sigabbrev_np(signum) ? sigabbrev_np(signum) : "signal");
  hs_loop_stop(loop);
}

static void on_reloaded(hs_slot *slot, const hs_error *err, void *data) {
  hs_ctl_conn *conn = data;
  char msg[800];
  int n;
  if (err->code == 0)
    n = snprintf(msg, sizeof(msg),
                 "%s: version %s live, generation %u (%.2f ms, pause %.0f "
                 "us)\n",
                 slot->name, slot->version, slot->generation,
                 (double)slot->last.swapped_ns / 1e6,
                 (double)slot->last.pause_ns / 1e3);
  else if (err->stage[0])
    n = snprintf(msg, sizeof(msg), "%s: rejected in stage %s: %s (%s)\n",
                 slot->name, err->stage, err->msg, hs_err_name(err->code));
  else
    n = snprintf(msg, sizeof(msg), "%s: not reloaded: %s\n", slot->name,
                 err->msg);
  hs_ctl_reply(conn, err->code == 0, msg,
               (size_t)(n < (int)sizeof(msg) ? n : (int)sizeof(msg) - 1));
}

static void on_control(hs_ctl *ctl, hs_ctl_conn *conn, const char *cmd,
                       const char *arg, void *data) {
  host *h = data;
  (void)ctl;
  if (strcmp(cmd, "status") == 0) {
    hs_buf out;
    hs_status_host info = {getpid(),
                           h->dir,
                           h->cache.dir,
                           h->control,
                           h->reexecs,
                           h->reexec_at,
                           h->reexec_pause_ns,
                           h->upgrade_error.code ? h->upgrade_error.msg
                                                 : NULL};
    hs_buf_init(&out);
    hs_status_format(&out, &h->reg, &info, strcmp(arg, "json") == 0);
    hs_ctl_reply(conn, !out.oom, out.data ? out.data : "", out.len);
    hs_buf_free(&out);
  } else if (strcmp(cmd, "reload") == 0) {
    int rc = hs_registry_reload(&h->reg, arg, on_reloaded, conn);
    char msg[300];
    int n = 0;
    if (rc == HS_ENOENT)
      n = snprintf(msg, sizeof(msg), "no plugin named '%s' in %s\n", arg,
                   h->dir);
    else if (rc == HS_EBUSY)
      n = snprintf(msg, sizeof(msg), "a reload of '%s' is already waiting\n",
                   arg);
    if (rc != 0)
      hs_ctl_reply(conn, 0, msg, (size_t)n);
  } else if (strcmp(cmd, "upgrade") == 0) {
    char msg[300];
    int n = 0, rc;
    if (h->upgrade_conn) {
      n = snprintf(msg, sizeof(msg), "an upgrade is already being checked\n");
      hs_ctl_reply(conn, 0, msg, (size_t)n);
      return;
    }
    h->upgrade_conn = conn; /* answered by on_upgrade_checked */
    rc = upgrade_request(h);
    if (rc == HS_ENOENT)
      upgrade_reply(h, 0, "upgrade refused: the host's own executable was "
                          "not found at start\n");
    else if (rc == HS_EBUSY)
      upgrade_reply(h, 0, "an upgrade is already being checked\n");
    else if (h->upgrade_ready)
      upgrade_reply(h, 1, "re-executing %s (hotswap %s, plugin ABI %d)\n",
                    h->up.path, h->up.new_version, h->up.new_abi);
  } else {
    static const char msg[] =
        "unknown command; try status, reload NAME or upgrade\n";
    hs_ctl_reply(conn, 0, msg, sizeof(msg) - 1);
  }
}

/* Listens on the control socket: the one systemd kept in its fd store for
 * us (a restart after a crash: connections made meanwhile were queued, not
 * refused), else a new one, which goes into the fd store. */
static int start_control(host *h, hs_error *err) {
  if (h->handed_over && h->handoff.control_fd >= 0) {
    int fd = h->handoff.control_fd;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (hs_ctl_adopt(&h->ctl, &h->loop, fd, h->control, on_control, h,
                     err) == 0)
      return 0; /* already in systemd's fd store, if we run under it */
    hs_log(HS_LOG_WARN, NULL, "warning", "%s; making a new one", err->msg);
    close(fd);
  }
  int fd = hs_notify_take(&h->notify, "control");
  if (fd >= 0) {
    if (hs_ctl_adopt(&h->ctl, &h->loop, fd, h->control, on_control, h,
                     err) == 0) {
      hs_log(HS_LOG_INFO, NULL, "control",
             "took the control socket %s back from systemd's fd store",
             h->control);
      return 0;
    }
    hs_log(HS_LOG_WARN, NULL, "warning", "%s; making a new one", err->msg);
    close(fd);
  }
  int rc = hs_ctl_start(&h->ctl, &h->loop, h->control, on_control, h, err);
  if (rc == 0)
    hs_notify_send_fds(&h->notify, "FDSTORE=1\nFDNAME=control", &h->ctl.fd,
                       1);
  return rc;
}

/* Finds the host's own executable and watches it (unless
 * --no-upgrade-watch). Without it, upgrades are refused, saying why. */
static void start_upgrade(host *h) {
  hs_error err;
  char *path = h->handed_over ? strdup(h->handoff.self_path)
                              : hs_upgrade_resolve(h->argv[0]);
  hs_loop_timer_init(&h->upgrade_timer, on_upgrade_timer, h);
  if (!path) {
    hs_log(HS_LOG_WARN, NULL, "warning",
           "cannot find this host's executable (%s): it cannot upgrade "
           "itself",
           h->argv[0]);
    return;
  }
  if (hs_upgrade_init(&h->up, &h->loop, path,
                      h->handed_over ? h->handoff.self_hash : 0,
                      !h->opt.no_upgrade_watch,
                      (uint64_t)h->opt.settle_ms * 1000000u,
                      on_upgrade_checked, h, &err) != 0)
    hs_log(HS_LOG_WARN, NULL, "warning",
           "%s: this host cannot upgrade itself", err.msg);
  else
    h->up_ok = 1;
  free(path);
}

static int fail(const char *what, const hs_error *e) {
  hs_log(HS_LOG_ERROR, NULL, "error", "%s: %s", what, e->msg);
  return 1;
}

static int run_host(host *h) {
  hs_error err;
  int rc = 1;

  signal(SIGPIPE, SIG_IGN);
  hs_log_init(h->opt.log_format, h->opt.log_level, 2);
  rc = hs_notify_init(&h->notify);
  if (rc != 0)
    hs_log(HS_LOG_WARN, NULL, "warning",
           "NOTIFY_SOCKET is set but unusable (%s); not notifying systemd",
           hs_strerror(rc));
  /* Before anything opens an fd: systemd's start at 3. */
  if (hs_notify_listen_fds(&h->notify) < 0)
    hs_log(HS_LOG_WARN, NULL, "warning",
           "out of memory for the fds systemd passed; closed them");
  hs_api_set_notify(&h->notify);
  rc = 1;
  if (!realpath(h->opt.plugin_dir, h->dir)) {
    hs_log(HS_LOG_ERROR, NULL, "error", "plugin directory %s: %s",
           h->opt.plugin_dir, strerror(errno));
    return 1;
  }
  /* A link to the directory decides what is loaded: only ours or root's. */
  if (!h->opt.allow_insecure &&
      hs_perm_check_link(h->opt.plugin_dir, "scan", &err) != 0)
    return fail("plugins", &err);
  h->control = h->opt.control_path ? strdup(h->opt.control_path)
                                   : hs_ctl_default_path();
  if (!h->control)
    return 1;
  /* A plugin's crash or hang comes back to the host (guard.h, crash.h). */
  if (hs_guard_install(h->opt.callback_budget_ms, &err) != 0)
    hs_log(HS_LOG_WARN, NULL, "warning",
           "%s: a plugin that crashes takes the host down", err.msg);
  if (hs_loop_init(&h->loop) != 0) {
    hs_log(HS_LOG_ERROR, NULL, "error", "epoll: %s", strerror(errno));
    goto out_control;
  }
  if (h->handed_over && strcmp(h->handoff.plugin_dir, h->dir) != 0) {
    hs_log(HS_LOG_ERROR, NULL, "error",
           "the previous image ran on %s, this one on %s: not taking over",
           h->handoff.plugin_dir, h->dir);
    goto out_loop;
  }
  if ((h->handed_over ? hs_cache_adopt(&h->cache, h->handoff.cache_dir,
                                       h->handoff.cache_next, &err)
                      : hs_cache_init(&h->cache, h->opt.cache_parent,
                                      &err)) != 0) {
    fail("cache", &err);
    goto out_loop;
  }
  hs_registry_opts ropts = {
      .allow_state_reset = h->opt.allow_state_reset,
      .limits = {h->opt.sandbox_timeout_ms, h->opt.sandbox_cpu_s,
                 (uint64_t)h->opt.sandbox_mem_mb << 20},
      .log_format = h->opt.log_format,
      .log_level = h->opt.log_level,
      .color = h->opt.log_format == HS_LOG_TEXT && isatty(2) &&
               !(getenv("NO_COLOR") && *getenv("NO_COLOR")),
      .plugin_werror = h->opt.plugin_werror,
      .lazy_pool = h->handed_over, /* not inside the upgrade's pause */
      .allow_insecure = h->opt.allow_insecure,
      .build_limits = {h->opt.build_timeout_ms,
                       h->opt.build_timeout_ms / 1000 + 1,
                       (uint64_t)h->opt.sandbox_mem_mb << 20},
      .crash_grace_ms = h->opt.crash_grace_s * 1000u,
      .crash_limit = h->opt.crash_limit,
  };
  if (hs_registry_init(&h->reg, &h->loop, &h->cache, h->dir, &ropts, &err)) {
    fail("plugins", &err);
    goto out_cache;
  }
  if (h->handed_over) {
    h->reg.started_at = h->handoff.started_at;
    h->reg.started_ns = h->handoff.started_ns;
    h->reexecs = h->handoff.reexecs;
    h->reexec_at = h->handoff.reexec_at;
    hs_registry_adopt(&h->reg, &h->handoff);
  }
  if (start_control(h, &err) != 0) {
    fail("control", &err);
    goto out_registry;
  }
  rc = hs_watch_start(&h->watch, &h->loop, h->dir,
                      (uint64_t)h->opt.settle_ms * 1000000u, on_watch, h);
  if (rc != 0) {
    hs_log(HS_LOG_ERROR, NULL, "error", "cannot watch %s: %s", h->dir,
           hs_strerror(rc));
    rc = 1;
    goto out_ctl;
  }
  if (hs_loop_signal_start(&h->loop, SIGINT, on_signal, h) ||
      hs_loop_signal_start(&h->loop, SIGTERM, on_signal, h) ||
      hs_loop_signal_start(&h->loop, SIGHUP, on_signal, h) ||
      hs_loop_signal_start(&h->loop, SIGUSR2, on_signal, h)) {
    hs_log(HS_LOG_ERROR, NULL, "error", "signalfd: %s", strerror(errno));
    rc = 1;
    goto out_watch;
  }
  start_upgrade(h);
  h->ready_pending = 1;
  hs_registry_on_idle(&h->reg, on_idle, h);
  if (h->handed_over) {
    h->reexec_pause_ns = hs_now_ns() - h->handoff.paused_ns;
    hs_log(HS_LOG_INFO, NULL, "upgraded",
           "hotswap %s (ABI %d) took over from hotswap %s, pid %d, upgrade "
           "%" PRIu32 ": plugins paused %.2f ms",
           HS_VERSION_STRING, HS_ABI_VERSION, h->handoff.host_version,
           (int)getpid(), h->reexecs, (double)h->reexec_pause_ns / 1e6);
    hs_handoff_free(&h->handoff);
  } else {
    hs_log(HS_LOG_INFO, NULL, "started",
           "hotswap %s (ABI %d), pid %d, watching %s, control %s, cache %s",
           HS_VERSION_STRING, HS_ABI_VERSION, (int)getpid(), h->dir,
           h->control, h->cache.dir);
  }
  hs_registry_scan(&h->reg);
  rc = hs_loop_run(&h->loop) == 0 ? 0 : 1;
  /* Shutting down: a second Ctrl-C must not cut the cleanup short (the
   * signals pending now are discarded with them). */
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);

out_watch:
  if (h->up_ok)
    hs_upgrade_close(&h->up);
  hs_loop_timer_stop(&h->upgrade_timer);
  hs_watch_stop(&h->watch);
  hs_registry_on_idle(&h->reg, NULL, NULL);
out_ctl:
  /* The registry first: forced reloads still waiting get their answer. */
  hs_registry_close(&h->reg, HS_UNLOAD_SHUTDOWN);
  /* A clean stop unlinks the socket: systemd must not hand it back. */
  hs_notify_send(&h->notify, "FDSTOREREMOVE=1\nFDNAME=control");
  hs_ctl_stop(&h->ctl);
  goto out_cache;
out_registry:
  hs_registry_close(&h->reg, HS_UNLOAD_SHUTDOWN);
out_cache:
  hs_cache_close(&h->cache);
out_loop:
  hs_loop_close(&h->loop);
out_control:
  if (rc == 0)
    hs_log(HS_LOG_INFO, NULL, "stopped", "clean exit");
  hs_notify_close(&h->notify);
  hs_guard_uninstall();
  free(h->control);
  return rc;
}

static int run_client(const hs_options *o) {
  char *path = o->control_path ? strdup(o->control_path)
                               : hs_ctl_default_path();
  hs_buf reply;
  hs_error err;
  int ok = 0, rc;

  if (!path)
    return 1;
  hs_buf_init(&reply);
  if (o->command == HS_CMD_STATUS)
    rc = hs_ctl_request(path, "status", o->json ? "json" : "", 5000, &reply,
                        &ok, &err);
  else if (o->command == HS_CMD_UPGRADE)
    rc = hs_ctl_request(path, "upgrade", "", 30000, &reply, &ok, &err);
  else
    rc = hs_ctl_request(path, "reload", o->reload_name, 60000, &reply, &ok,
                        &err);
  free(path);
  if (rc != 0) {
    fprintf(stderr, "hotswap: %s\n", err.msg);
    hs_buf_free(&reply);
    return 1;
  }
  fwrite(reply.data ? reply.data : "", 1, reply.len, ok ? stdout : stderr);
  hs_buf_free(&reply);
  return ok ? 0 : 1;
}

/* hotswap new NAME [--dir DIR]: writes the skeleton, says how to build it. */
static int run_new(const hs_options *o) {
  hs_error err;

  if (hs_scaffold_write(o->new_dir, o->new_name, &err) != 0) {
    fprintf(stderr, "hotswap: new: %s\n", err.msg);
    return 1;
  }
  hs_scaffold_print_next(stdout, o->new_dir, o->new_name);
  return 0;
}

/* After a re-exec: reads what the previous image handed over. A handoff
 * that cannot be read stops this image loudly (exit 1 with the reason):
 * it never starts empty in place of a host that had plugins. */
static int take_handoff(host *h) {
  const char *value = getenv(HS_HANDOFF_ENV);
  hs_error err;
  char env[32], *end;

  if (!value)
    return 0;
  snprintf(env, sizeof(env), "%s", value);
  unsetenv(HS_HANDOFF_ENV); /* not for our children, nor the next exec */
  long fd = strtol(env, &end, 10);
  if (*env == '\0' || *end != '\0' || fd < 3 || fd > INT_MAX) {
    fprintf(stderr,
            "hotswap: cannot take over from the previous image: "
            "%s=%s is not an fd number\n",
            HS_HANDOFF_ENV, env);
    return 1;
  }
  int rc = hs_handoff_read((int)fd, &h->handoff, &err);
  close((int)fd);
  if (rc != 0) {
    fprintf(stderr,
            "hotswap: cannot take over from the previous image: %s\n",
            err.msg);
    return 1;
  }
  h->handed_over = 1;
  return 0;
}

int main(int argc, char **argv) {
  static host h;
  hs_error err;

  if (argc > 1 && strcmp(argv[1], HS_ZYGOTE_ARG) == 0)
    return hs_zygote_main(argc, argv);
  if (argc > 1 && strcmp(argv[1], HS_UPGRADE_CHECK_ARG) == 0)
    return hs_upgrade_check_main(argc, argv);
  h.argv = argv;
  if (hs_options_parse(&h.opt, argc, argv, &err) != 0) {
    fprintf(stderr, "hotswap: %s\nTry 'hotswap --help'.\n", err.msg);
    return 2;
  }
  switch (h.opt.command) {
  case HS_CMD_HELP:
    hs_options_usage(stdout);
    return 0;
  case HS_CMD_VERSION:
    printf("hotswap %s (plugin ABI %d)\n", HS_VERSION_STRING, HS_ABI_VERSION);
    return 0;
  case HS_CMD_STATUS:
  case HS_CMD_RELOAD:
  case HS_CMD_UPGRADE:
    return run_client(&h.opt);
  case HS_CMD_NEW:
    return run_new(&h.opt);
  case HS_CMD_RUN:
    break;
  }
  if (take_handoff(&h) != 0)
    return 1;
  return run_host(&h);
}
