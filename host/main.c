/*
 * main.c - wires the modules into the hotswap command: the host
 * (hotswap [OPTIONS] PLUGIN_DIR), its control clients (status, reload) and
 * the validator mode the host spawns for itself.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "ctl.h"
#include "log.h"
#include "loop.h"
#include "notify.h"
#include "options.h"
#include "registry.h"
#include "sandbox.h"
#include "scaffold.h"
#include "status.h"
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
} host;

/* The pipeline has settled: tell systemd (READY=1 after the first scan or
 * a rescan, and a one-line STATUS= each time). */
static void on_idle(hs_registry *reg, void *data) {
  host *h = data;
  unsigned live, failed;
  hs_registry_count(reg, &live, &failed);
  hs_notify_send(&h->notify, "%sSTATUS=%u plugin%s live, %u rejected",
                 h->ready_pending ? "READY=1\n" : "", live,
                 live == 1 ? "" : "s", failed);
  h->ready_pending = 0;
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

static void on_signal(hs_loop *loop, int signum, void *data) {
  host *h = data;
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
    hs_status_host info = {getpid(), h->dir, h->cache.dir, h->control};
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
  } else {
    static const char msg[] = "unknown command; try status or reload NAME\n";
    hs_ctl_reply(conn, 0, msg, sizeof(msg) - 1);
  }
}

/* Listens on the control socket: the one systemd kept in its fd store for
 * us (a restart after a crash: connections made meanwhile were queued, not
 * refused), else a new one, which goes into the fd store. */
static int start_control(host *h, hs_error *err) {
  int fd = hs_notify_listen_fd("control");
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
  rc = 1;
  if (!realpath(h->opt.plugin_dir, h->dir)) {
    hs_log(HS_LOG_ERROR, NULL, "error", "plugin directory %s: %s",
           h->opt.plugin_dir, strerror(errno));
    return 1;
  }
  h->control = h->opt.control_path ? strdup(h->opt.control_path)
                                   : hs_ctl_default_path();
  if (!h->control)
    return 1;
  if (hs_loop_init(&h->loop) != 0) {
    hs_log(HS_LOG_ERROR, NULL, "error", "epoll: %s", strerror(errno));
    goto out_control;
  }
  if (hs_cache_init(&h->cache, h->opt.cache_parent, &err) != 0) {
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
      .build_limits = {h->opt.build_timeout_ms,
                       h->opt.build_timeout_ms / 1000 + 1,
                       (uint64_t)h->opt.sandbox_mem_mb << 20},
  };
  if (hs_registry_init(&h->reg, &h->loop, &h->cache, h->dir, &ropts, &err)) {
    fail("plugins", &err);
    goto out_cache;
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
      hs_loop_signal_start(&h->loop, SIGHUP, on_signal, h)) {
    hs_log(HS_LOG_ERROR, NULL, "error", "signalfd: %s", strerror(errno));
    rc = 1;
    goto out_watch;
  }
  h->ready_pending = 1;
  hs_registry_on_idle(&h->reg, on_idle, h);
  hs_log(HS_LOG_INFO, NULL, "started",
         "hotswap %s (ABI %d), pid %d, watching %s, control %s, cache %s",
         HS_VERSION_STRING, HS_ABI_VERSION, (int)getpid(), h->dir,
         h->control, h->cache.dir);
  hs_registry_scan(&h->reg);
  rc = hs_loop_run(&h->loop) == 0 ? 0 : 1;
  /* Shutting down: a second Ctrl-C must not cut the cleanup short (the
   * signals pending now are discarded with them). */
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);

out_watch:
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

int main(int argc, char **argv) {
  static host h;
  hs_error err;

  if (argc > 1 && strcmp(argv[1], HS_ZYGOTE_ARG) == 0)
    return hs_zygote_main(argc, argv);
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
    return run_client(&h.opt);
  case HS_CMD_NEW:
    return run_new(&h.opt);
  case HS_CMD_RUN:
    break;
  }
  return run_host(&h);
}
