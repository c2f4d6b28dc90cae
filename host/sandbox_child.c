/*
 * sandbox_child.c - the validator: a process of the host's own image (a
 * child of the zygote, see zygote.c) that tries a candidate version on a
 * copy of the live state and reports each stage before it starts, then
 * its verdict, on fd 4. See sandbox.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "api.h"
#include "dl.h"
#include "err.h"
#include "imagemap.h"
#include "loader.h"
#include "log.h"
#include "sandbox.h"
#include "state.h"
#include "threads.h"

#define STATE_FD 3
#define REPORT_FD 4 /* the verdict: the host waits on it */
#define STAGE_FD 5  /* stages and the descriptor: read when the verdict is */

/* AddressSanitizer reserves terabytes of address space: RLIMIT_AS would
 * stop it before the plugin runs. */
#if defined(__SANITIZE_ADDRESS__)
#define HS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HS_ASAN 1
#endif
#endif

static void report(int fd, const char *fmt, ...) HS_PRINTF_(2, 3);

/* One line to the host, newlines inside folded to spaces. */
static void report(int fd, const char *fmt, ...) {
  char line[700];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n > sizeof(line) - 2)
    n = (int)sizeof(line) - 2;
  for (int i = 0; i < n; i++)
    if (line[i] == '\n')
      line[i] = ' ';
  line[n++] = '\n';
  for (const char *p = line; n > 0;) {
    ssize_t w = write(fd, p, (size_t)n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return;
    p += w;
    n -= (int)w;
  }
}

/* The stage about to start: to the stage pipe, which wakes nobody (the
 * host reads it with the verdict, or after a crash to name the stage). */
#define stage(name) report(STAGE_FD, "stage %s", name)

/* Before the verdict: from now on the host, woken by it, runs first on
 * this CPU, and this process's exit (unmapping all it has) waits. */
static void step_aside(void) {
  struct sched_param p = {0};
  sched_setscheduler(0, SCHED_IDLE, &p);
}

static int fail(const hs_error *e) {
  step_aside();
  report(REPORT_FD, "fail %s %d %s", e->stage[0] ? e->stage : "sandbox",
         e->code, e->msg);
  return 1;
}

static void limit(int resource, rlim_t value) {
  struct rlimit rl = {value, value};
  setrlimit(resource, &rl);
}

static uint64_t num(const char *s) { return strtoull(s, NULL, 10); }

/* The state after migrate() and load() must not point into the version it
 * replaces (map: its ranges in the host): the swap unmaps that version. */
static int check_pointers(const hs_imagemap *map, const hs_state *st,
                          const char *file, const char *version,
                          hs_error *err) {
  hs_imagemap_hit hits[3];
  size_t total = hs_imagemap_scan(map, st->data, st->size, hits, 3);

  if (total == 0)
    return 0;
  return hs_imagemap_reject(hits, total < 3 ? total : 3, total, file,
                            version, err);
}

/* The validator has one thread: any other one after unload() is the
 * plugin's, left running on code that dlclose would unmap. One that is
 * just exiting (joined a moment ago) gets up to 100 ms to go. */
static int check_threads(const char *file, hs_error *err) {
  int n = 1;

  for (int i = 0; i < 100; i++) {
    if ((n = hs_threads_count()) <= 1)
      return 0;
    usleep(1000);
  }
  return hs_error_set(err, HS_ETHREAD, "unload",
                      "unload() of %s left %d thread%s running: stop and "
                      "join %s in unload() (dlclose would unmap the code "
                      "%s run%s)",
                      file, n - 1, n == 2 ? "" : "s", n == 2 ? "it" : "them",
                      n == 2 ? "it" : "they", n == 2 ? "s" : "");
}

int hs_sandbox_child_main(int argc, char **argv) {
  hs_error err;
  hs_state live = {0}, st = {0};
  hs_ctx ctx;
  int rc;

  if (argc != 18) {
    fprintf(stderr, "hotswap: %s is internal to hotswap\n", HS_SANDBOX_ARG);
    return 2;
  }
  const char *name = argv[2], *dir = argv[3], *file = argv[4],
             *path = argv[5];
  hs_load_reason reason = (hs_load_reason)num(argv[6]);
  int allow_reset = (int)num(argv[7]), has_state = (int)num(argv[8]);
  uint32_t sv = (uint32_t)num(argv[9]), ss = (uint32_t)num(argv[10]);
  rlim_t cpu = (rlim_t)num(argv[11]);
  rlim_t mem = (rlim_t)num(argv[12]);
  pid_t ppid = (pid_t)num(argv[13]);
  hs_log_init((hs_log_format)num(argv[14]), (hs_log_level)num(argv[15]), 2);
  const char *old_version = argv[16];
  hs_imagemap old_map;
  old_map.n = 0; /* "-": nothing to scan */
  if (strcmp(argv[17], "-") != 0)
    hs_imagemap_decode(&old_map, argv[17]);

  /* Die with the parent (the host, or the zygote that dies with the
   * host); no core files; bounded CPU and memory. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (ppid != 0 && getppid() != ppid)
    _exit(3);
  limit(RLIMIT_CORE, 0);
  if (cpu > 0) {
    struct rlimit rl = {cpu, cpu + 1};
    setrlimit(RLIMIT_CPU, &rl);
  }
#ifndef HS_ASAN
  if (mem > 0)
    limit(RLIMIT_AS, mem);
#else
  (void)mem;
#endif
  hs_error_clear(&err);

  /* The snapshot, mapped copy-on-write: what the plugin writes stays
   * here, and the host leaves it alone until the verdict (state.h). */
  if (has_state && hs_state_map_fd(&live, STATE_FD, sv, ss) != 0) {
    hs_error_set(&err, HS_EIO, "sandbox", "cannot read the live state of %s",
                 file);
    _exit(fail(&err));
  }
  close(STATE_FD);
  /* A full stage pipe (a plugin writing to fd 5) must not block. */
  fcntl(STAGE_FD, F_SETFL, O_NONBLOCK);

  /* Each stage is announced first, so that a crash is pinned on it. */
  stage("open");
  void *handle = hs_dl_open(path, &err);
  if (!handle) {
    /* hs_dl_open names the cache copy; say which plugin it is. */
    hs_error e2;
    hs_error_set(&e2, err.code, "open", "cannot load %s: %s", file, err.msg);
    _exit(fail(&e2));
  }
  stage("entry");
  hs_entry_fn *entry = (hs_entry_fn *)hs_dl_sym(handle, HS_ENTRY_SYMBOL, file,
                                                HS_ENOENTRY, "entry", &err);
  if (!entry)
    _exit(fail(&err));
  const hs_plugin *desc = entry(hs_api_get());
  if (!desc) {
    hs_error_set(&err, HS_EDESC, "entry", "%s of %s returned NULL",
                 HS_ENTRY_SYMBOL, file);
    _exit(fail(&err));
  }
  stage("abi");
  if (hs_loader_check(desc, file, &err) != 0)
    _exit(fail(&err));
  report(STAGE_FD, "desc %" PRIu32 " %" PRIu32 " %s", desc->state_version,
         desc->state_size, desc->version);

  hs_api_ctx_init(&ctx, name, dir, NULL, 1);
  ctx.desc = desc;
  char conf[PATH_MAX];
  snprintf(conf, sizeof(conf), "%s/%s.conf", dir, name);
  hs_config_load(&ctx.config, AT_FDCWD, conf); /* load() may read it */
  stage("migrate");
  if (has_state && hs_state_compatible(&live, desc)) {
    hs_state_move(&st, &live); /* a private copy already: no second one */
  } else if (has_state) {
    rc = hs_state_migrate(&live, desc, &ctx, allow_reset, file, NULL, &st,
                          NULL, &err);
    if (rc != 0)
      _exit(fail(&err));
  } else if (hs_state_init(&st, desc->state_version, desc->state_size) != 0) {
    hs_error_set(&err, HS_ENOMEM, "migrate",
                 "cannot allocate %" PRIu32 " bytes of state for %s",
                 desc->state_size, file);
    _exit(fail(&err));
  }
  ctx.state = st.data;

  stage("load");
  rc = desc->load(&ctx, st.data, reason);
  if (rc != 0) {
    hs_error_set(&err, rc < 0 ? rc : HS_ELOAD, "load",
                 "load() of %s returned %s (%s)", file, hs_err_name(rc),
                 hs_strerror(rc));
    _exit(fail(&err));
  }
  if (old_map.n > 0) {
    stage("pointers");
    if (check_pointers(&old_map, &st, file, old_version, &err) != 0)
      _exit(fail(&err));
  }
  if (desc->selftest) {
    stage("selftest");
    rc = desc->selftest(&ctx, st.data);
    if (rc != 0) {
      hs_error_set(&err, rc < 0 ? rc : HS_ESELFTEST, "selftest",
                   "selftest() of %s returned %s (%s)", file,
                   hs_err_name(rc), hs_strerror(rc));
      _exit(fail(&err));
    }
  }
  stage("unload");
  desc->unload(&ctx, st.data, HS_UNLOAD_RELOAD);
  if (check_threads(file, &err) != 0)
    _exit(fail(&err));
  step_aside();
  report(REPORT_FD, "ok");
  _exit(0);
}
