/* guard.c - crash containment for plugin callbacks; see guard.h. */
#include "guard.h"

#include <dlfcn.h>
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "log.h"

#define HANG_SIGNAL SIGXCPU
#define ALT_STACK_SIZE (256u * 1024u) /* the handler is small; ASan's
                                         longjmp interceptor is not */

static const int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT,
                            HANG_SIGNAL};
#define NFATAL (sizeof(fatal) / sizeof(fatal[0]))

/* One callback running under hs_guard_call, on its caller's stack. */
typedef struct guard {
  sigjmp_buf env;
  struct guard *prev;    /* the callback this one runs inside, or NULL */
  hs_guard_fault *fault; /* filled by the handler */
  const char *callback;
  uint64_t seq;          /* the watchdog's number for it; 0: unwatched */
  uint64_t start_ns;     /* when the outermost one started (coarse) */
} guard;

static _Thread_local guard *tl_guard;     /* innermost running, or NULL */
static _Thread_local int tl_armed;        /* this thread has the stack */
static _Thread_local hs_guard_fault tl_last;

/* Set by hs_guard_install on the loop thread, read-only until uninstall
 * (the handler reads it on any thread). */
static struct {
  int installed;
  struct sigaction old[NFATAL]; /* what each signal had before */
  sigset_t set;                 /* the signals of fatal[] */
  void *stack;
  stack_t old_stack;
} g_inst;

/*
 * The watchdog. The loop thread publishes the callback it starts in a
 * seqlock (seq odd while it writes, even once the record is whole) and
 * stores seq into done when it returns; so a callback is running while
 * done != seq. The watchdog thread reads the record without a lock; it
 * sleeps on word, a futex: WD_IDLE (no timeout, until a callback starts
 * and wakes it), WD_AWAKE (timed, until the next deadline), WD_QUIT.
 */
#define WD_AWAKE 0u
#define WD_IDLE 1u
#define WD_QUIT 2u
#define WD_NAME_WORDS 8 /* the plugin's name, 63 bytes at most */

static struct {
  int started;
  pthread_t thread;
  pthread_t loop;           /* the thread a hang is interrupted on */
  uint64_t budget_ns;
  _Atomic uint32_t word;
  _Atomic uint64_t seq;
  _Atomic uint64_t done;
  _Atomic uint64_t start_ns;
  _Atomic(const char *) callback;
  _Atomic uint64_t name[WD_NAME_WORDS];
  _Atomic uint64_t interrupt; /* the seq the loop thread must abandon */
} wd;

/* A consistent copy of the watchdog's record. */
typedef struct watch_rec {
  uint64_t seq, start_ns;
  const char *callback;
  int running;
  union {
    uint64_t words[WD_NAME_WORDS];
    char text[WD_NAME_WORDS * 8];
  } name;
} watch_rec;

/* CLOCK_MONOTONIC at the kernel tick's resolution: a few nanoseconds,
 * enough for budgets in milliseconds. */
static uint64_t coarse_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *w, uint32_t val,
                       const struct timespec *timeout) {
  syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, timeout, NULL,
          0);
}

static void futex_wake(_Atomic uint32_t *w) {
  syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* The loop thread starts a callback: publishes it, and wakes the watchdog
 * if it sleeps without a timeout. Returns the callback's seq. */
static uint64_t watch_enter(const char *plugin, const char *callback,
                            uint64_t *start_ns) {
  union {
    uint64_t words[WD_NAME_WORDS];
    char text[WD_NAME_WORDS * 8];
  } name;
  size_t len = plugin ? strnlen(plugin, sizeof(name.text) - 1) : 0;
  size_t nwords = len / 8 + 1;
  uint64_t s = atomic_load_explicit(&wd.seq, memory_order_relaxed) + 1;

  memset(&name.words[len / 8], 0, 8);
  if (len)
    memcpy(name.text, plugin, len);
  *start_ns = coarse_ns();
  atomic_store_explicit(&wd.seq, s, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  atomic_store_explicit(&wd.start_ns, *start_ns, memory_order_relaxed);
  atomic_store_explicit(&wd.callback, callback, memory_order_relaxed);
  for (size_t i = 0; i < nwords; i++)
    atomic_store_explicit(&wd.name[i], name.words[i], memory_order_relaxed);
  atomic_store_explicit(&wd.seq, s + 1, memory_order_seq_cst);
  if (atomic_load_explicit(&wd.word, memory_order_seq_cst) == WD_IDLE) {
    uint32_t idle = WD_IDLE;
    if (atomic_compare_exchange_strong(&wd.word, &idle, WD_AWAKE))
      futex_wake(&wd.word);
  }
  return s + 1;
}

static void watch_leave(uint64_t seq) {
  if (seq)
    atomic_store_explicit(&wd.done, seq, memory_order_release);
}

/* Copies the record into r. Returns 0 while the loop thread is writing
 * it (the caller retries). */
static int watch_read(watch_rec *r) {
  uint64_t s1 = atomic_load_explicit(&wd.seq, memory_order_seq_cst);
  if (s1 & 1)
    return 0;
  r->start_ns = atomic_load_explicit(&wd.start_ns, memory_order_relaxed);
  r->callback = atomic_load_explicit(&wd.callback, memory_order_relaxed);
  for (size_t i = 0; i < WD_NAME_WORDS; i++)
    r->name.words[i] = atomic_load_explicit(&wd.name[i], memory_order_relaxed);
  atomic_thread_fence(memory_order_acquire);
  if (atomic_load_explicit(&wd.seq, memory_order_relaxed) != s1)
    return 0;
  r->name.text[sizeof(r->name.text) - 1] = '\0';
  r->seq = s1;
  r->running = s1 != 0 &&
               atomic_load_explicit(&wd.done, memory_order_acquire) != s1;
  return 1;
}

static void wait_ns(uint32_t expect, uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000u),
                        (long)(ns % 1000000000u)};
  futex_wait(&wd.word, expect, &ts);
}

static void *watchdog_main(void *arg) {
  uint64_t seen = 0, reported = 0, interrupted = 0;
  const uint64_t budget = wd.budget_ns;
  watch_rec r;
  (void)arg;

  while (atomic_load(&wd.word) != WD_QUIT) {
    if (!watch_read(&r)) {
      sched_yield(); /* the loop thread is half-way through publishing */
      continue;
    }
    if (!r.running && r.seq != seen) {
      /* Callbacks ran lately: look again in a budget rather than make the
       * next one wake us (a syscall on the loop thread). */
      seen = r.seq;
      wait_ns(WD_AWAKE, budget);
      continue;
    }
    if (!r.running) {
      uint32_t state = WD_AWAKE;
      if (!atomic_compare_exchange_strong(&wd.word, &state, WD_IDLE))
        continue; /* quitting */
      if (!watch_read(&r) || r.running || r.seq != seen) {
        state = WD_IDLE;
        atomic_compare_exchange_strong(&wd.word, &state, WD_AWAKE);
        continue;
      }
      futex_wait(&wd.word, WD_IDLE, NULL);
      continue;
    }
    seen = r.seq;
    uint64_t now = coarse_ns(), next;
    uint64_t ran = now > r.start_ns ? now - r.start_ns : 0;
    if (ran >= budget && reported != r.seq) {
      reported = r.seq;
      hs_log(HS_LOG_WARN, r.name.text[0] ? r.name.text : NULL, "warning",
             "%s() has been running for %.0f ms, longer than the callback "
             "budget (%.0f ms); at %.0f ms it is interrupted",
             r.callback, (double)ran / 1e6, (double)budget / 1e6,
             (double)(budget * HS_GUARD_INTERRUPT) / 1e6);
    }
    if (ran >= budget * HS_GUARD_INTERRUPT && interrupted != r.seq) {
      interrupted = r.seq;
      atomic_store(&wd.interrupt, r.seq);
      pthread_kill(wd.loop, HANG_SIGNAL);
    }
    if (reported != r.seq)
      next = r.start_ns + budget;
    else if (interrupted != r.seq)
      next = r.start_ns + budget * HS_GUARD_INTERRUPT;
    else
      next = now + budget; /* interrupted: see whether it ended */
    wait_ns(WD_AWAKE, next > now + 1000000u ? next - now : 1000000u);
  }
  return NULL;
}

static int watchdog_start(uint32_t budget_ms) {
  sigset_t all, old;
  int rc;

  wd.budget_ns = (uint64_t)budget_ms * 1000000u;
  wd.loop = pthread_self();
  atomic_store(&wd.word, WD_AWAKE);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(&wd.thread, NULL, watchdog_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0)
    return -rc;
  wd.started = 1;
  return 0;
}

static void watchdog_stop(void) {
  if (!wd.started)
    return;
  atomic_store(&wd.word, WD_QUIT);
  futex_wake(&wd.word);
  pthread_join(wd.thread, NULL);
  wd.started = 0;
}

/* ---- the handler ------------------------------------------------------- */

/* Not ours to handle: the signal gets back its previous action (the
 * default, unless a sanitizer had one) and happens again. A fault of the
 * CPU repeats when the handler returns; one that was sent is sent again,
 * and arrives when the handler returns. */
static void pass_on(int signo, const siginfo_t *si) {
  for (size_t i = 0; i < NFATAL; i++)
    if (fatal[i] == signo)
      sigaction(signo, &g_inst.old[i], NULL);
  if (si->si_code <= 0)
    raise(signo);
}

static uintptr_t pc_of(const void *uc) {
#if defined(__x86_64__)
  return (uintptr_t)((const ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
#elif defined(__i386__)
  return (uintptr_t)((const ucontext_t *)uc)->uc_mcontext.gregs[REG_EIP];
#elif defined(__aarch64__)
  return (uintptr_t)((const ucontext_t *)uc)->uc_mcontext.pc;
#else
  (void)uc;
  return 0;
#endif
}

static void on_fatal(int signo, siginfo_t *si, void *uc) {
  guard *g = tl_guard;
  /* Brought on by this thread: a fault, abort(), raise(). */
  int self = si->si_code == SI_TKILL && si->si_pid == getpid();
  int hang = 0;

  if (signo == HANG_SIGNAL) {
    if (!self) {
      pass_on(signo, si);
      return;
    }
    if (!g || !g->seq || g->seq != atomic_load(&wd.interrupt))
      return; /* late: the callback it was meant for has returned */
    hang = 1;
  } else if (!g || !(si->si_code > 0 || self)) {
    pass_on(signo, si);
    return;
  }
  g->fault->signo = signo;
  g->fault->code = si->si_code;
  g->fault->addr = hang ? 0 : (uintptr_t)si->si_addr;
  g->fault->pc = pc_of(uc);
  g->fault->hang = hang;
  siglongjmp(g->env, 1);
}

/* ---- install ----------------------------------------------------------- */

int hs_guard_install(uint32_t budget_ms, hs_error *err) {
  struct sigaction sa;
  stack_t ss;
  size_t i;
  int rc;

  if (g_inst.installed)
    return hs_error_set(err, HS_EBUSY, "guard", "already installed");
  g_inst.stack = mmap(NULL, ALT_STACK_SIZE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (g_inst.stack == MAP_FAILED) {
    g_inst.stack = NULL;
    return hs_error_set(err, -errno, "guard",
                        "cannot map the signal stack: %s", strerror(errno));
  }
  memset(&ss, 0, sizeof(ss));
  ss.ss_sp = g_inst.stack;
  ss.ss_size = ALT_STACK_SIZE;
  if (sigaltstack(&ss, &g_inst.old_stack) != 0) {
    rc = -errno;
    goto fail_stack;
  }
  sigemptyset(&g_inst.set);
  for (i = 0; i < NFATAL; i++)
    sigaddset(&g_inst.set, fatal[i]);
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_fatal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sa.sa_mask = g_inst.set; /* a fault in the handler kills */
  for (i = 0; i < NFATAL; i++) {
    if (sigaction(fatal[i], &sa, &g_inst.old[i]) != 0) {
      rc = -errno;
      while (i-- > 0)
        sigaction(fatal[i], &g_inst.old[i], NULL);
      goto fail_altstack;
    }
  }
  /* Blocked, a fault of the CPU kills at once, whatever the handler. */
  pthread_sigmask(SIG_UNBLOCK, &g_inst.set, NULL);
  g_inst.installed = 1;
  tl_armed = 1;
  if (budget_ms > 0 && (rc = watchdog_start(budget_ms)) != 0) {
    hs_guard_uninstall();
    return hs_error_set(err, rc, "guard",
                        "cannot start the watchdog thread: %s",
                        hs_strerror(rc));
  }
  return 0;

fail_altstack:
  sigaltstack(&g_inst.old_stack, NULL);
fail_stack:
  munmap(g_inst.stack, ALT_STACK_SIZE);
  g_inst.stack = NULL;
  return hs_error_set(err, rc, "guard", "cannot install the crash handlers: %s",
                      hs_strerror(rc));
}

void hs_guard_uninstall(void) {
  if (!g_inst.installed)
    return;
  watchdog_stop();
  for (size_t i = 0; i < NFATAL; i++)
    sigaction(fatal[i], &g_inst.old[i], NULL);
  if (g_inst.old_stack.ss_sp == NULL)
    g_inst.old_stack.ss_flags = SS_DISABLE;
  sigaltstack(&g_inst.old_stack, NULL);
  munmap(g_inst.stack, ALT_STACK_SIZE);
  g_inst.stack = NULL;
  g_inst.installed = 0;
  tl_armed = 0;
}

/* ---- calls ------------------------------------------------------------- */

int hs_guard_call(hs_guard_fn *fn, void *arg, const char *plugin,
                  const char *callback, hs_guard_fault *fault) {
  guard g;

  if (!tl_armed) {
    fn(arg);
    return 0;
  }
  g.prev = tl_guard;
  g.fault = fault;
  g.callback = callback;
  g.start_ns = 0;
  if (g.prev) {
    g.seq = g.prev->seq;
    g.start_ns = g.prev->start_ns;
  } else {
    g.seq = wd.started ? watch_enter(plugin, callback, &g.start_ns) : 0;
  }
  if (sigsetjmp(g.env, 0) != 0) {
    /* Back from the handler: the signals it blocked are still blocked. */
    tl_guard = g.prev;
    pthread_sigmask(SIG_UNBLOCK, &g_inst.set, NULL);
    if (!g.prev)
      watch_leave(g.seq);
    g.fault->callback = g.callback;
    g.fault->ran_ns = g.start_ns ? coarse_ns() - g.start_ns : 0;
    tl_last = *g.fault;
    return HS_ECRASH;
  }
  atomic_signal_fence(memory_order_seq_cst);
  tl_guard = &g;
  atomic_signal_fence(memory_order_seq_cst);
  fn(arg);
  atomic_signal_fence(memory_order_seq_cst);
  tl_guard = g.prev;
  if (!g.prev)
    watch_leave(g.seq);
  return 0;
}

const hs_guard_fault *hs_guard_last(void) { return &tl_last; }

/* The arguments of one typed call. */
typedef struct call {
  hs_ctx *ctx;
  const hs_plugin *desc;
  int reason;
  int fd;
  uint32_t events;
  uint64_t token;
  void *new_state;
  const void *old_state;
  uint32_t old_version, old_size;
  int rc;
} call;

static void do_load(void *p) {
  call *c = p;
  c->rc = c->desc->load(c->ctx, c->ctx->state, (hs_load_reason)c->reason);
}

static void do_unload(void *p) {
  call *c = p;
  c->desc->unload(c->ctx, c->ctx->state, (hs_unload_reason)c->reason);
}

static void do_tick(void *p) {
  call *c = p;
  c->desc->tick(c->ctx, c->ctx->state);
}

static void do_io(void *p) {
  call *c = p;
  c->desc->on_io(c->ctx, c->ctx->state, c->fd, c->events, c->token);
}

static void do_timer(void *p) {
  call *c = p;
  c->desc->on_timer(c->ctx, c->ctx->state, c->token);
}

static void do_config(void *p) {
  call *c = p;
  c->desc->on_config(c->ctx, c->ctx->state);
}

static void do_migrate(void *p) {
  call *c = p;
  c->rc = c->desc->migrate(c->ctx, c->new_state, c->old_state,
                           c->old_version, c->old_size);
}

int hs_guard_load(hs_ctx *ctx, hs_load_reason reason, int *rc,
                  hs_guard_fault *fault) {
  call c = {.ctx = ctx, .desc = ctx->desc, .reason = (int)reason};
  if (hs_guard_call(do_load, &c, ctx->name, "load", fault) != 0)
    return HS_ECRASH;
  *rc = c.rc;
  return 0;
}

int hs_guard_unload(hs_ctx *ctx, hs_unload_reason reason,
                    hs_guard_fault *fault) {
  call c = {.ctx = ctx, .desc = ctx->desc, .reason = (int)reason};
  return hs_guard_call(do_unload, &c, ctx->name, "unload", fault);
}

int hs_guard_tick(hs_ctx *ctx, hs_guard_fault *fault) {
  call c = {.ctx = ctx, .desc = ctx->desc};
  return hs_guard_call(do_tick, &c, ctx->name, "tick", fault);
}

int hs_guard_io(hs_ctx *ctx, int fd, uint32_t events, uint64_t token,
                hs_guard_fault *fault) {
  call c = {.ctx = ctx, .desc = ctx->desc, .fd = fd, .events = events,
            .token = token};
  return hs_guard_call(do_io, &c, ctx->name, "on_io", fault);
}

int hs_guard_timer(hs_ctx *ctx, uint64_t token, hs_guard_fault *fault) {
  call c = {.ctx = ctx, .desc = ctx->desc, .token = token};
  return hs_guard_call(do_timer, &c, ctx->name, "on_timer", fault);
}

int hs_guard_config(hs_ctx *ctx, hs_guard_fault *fault) {
  call c = {.ctx = ctx, .desc = ctx->desc};
  return hs_guard_call(do_config, &c, ctx->name, "on_config", fault);
}

int hs_guard_migrate(const hs_plugin *desc, hs_ctx *ctx, void *new_state,
                     const void *old_state, uint32_t old_version,
                     uint32_t old_size, int *rc, hs_guard_fault *fault) {
  call c = {.ctx = ctx,
            .desc = desc,
            .new_state = new_state,
            .old_state = old_state,
            .old_version = old_version,
            .old_size = old_size};
  if (hs_guard_call(do_migrate, &c, ctx ? ctx->name : NULL, "migrate",
                    fault) != 0)
    return HS_ECRASH;
  *rc = c.rc;
  return 0;
}

/* ---- words ------------------------------------------------------------- */

const char *hs_guard_signal_name(int signo) {
  switch (signo) {
  case SIGSEGV:
    return "SIGSEGV";
  case SIGBUS:
    return "SIGBUS";
  case SIGFPE:
    return "SIGFPE";
  case SIGILL:
    return "SIGILL";
  case SIGABRT:
    return "SIGABRT";
  case SIGXCPU:
    return "SIGXCPU";
  default:
    return "a signal";
  }
}

/* What the signal's code says, in a few words. */
static void what(const hs_guard_fault *f, char *out, size_t size) {
  int sent = f->code <= 0;
  switch (f->signo) {
  case SIGSEGV:
    if (sent)
      snprintf(out, size, "raised");
    else
      snprintf(out, size, "bad access to address 0x%lx",
               (unsigned long)f->addr);
    return;
  case SIGBUS:
    if (sent)
      snprintf(out, size, "raised");
    else
      snprintf(out, size, "bus error at address 0x%lx",
               (unsigned long)f->addr);
    return;
  case SIGFPE:
    snprintf(out, size, "%s",
             sent                    ? "raised"
             : f->code == FPE_INTDIV ? "integer divide by zero"
             : f->code == FPE_INTOVF ? "integer overflow"
             : f->code == FPE_FLTDIV ? "floating-point divide by zero"
                                     : "arithmetic error");
    return;
  case SIGILL:
    snprintf(out, size, "%s", sent ? "raised" : "illegal instruction");
    return;
  case SIGABRT:
    snprintf(out, size, "abort");
    return;
  default:
    snprintf(out, size, "code %d", f->code);
    return;
  }
}

void hs_guard_locate(uintptr_t pc, const void *image, const char *plugin,
                     char *out, size_t size) {
  Dl_info at, img;

  if (pc == 0) {
    snprintf(out, size, "an unknown address");
    return;
  }
  if (!dladdr((void *)pc, &at) || at.dli_fbase == NULL) {
    snprintf(out, size, "0x%lx", (unsigned long)pc);
    return;
  }
  unsigned long off = (unsigned long)(pc - (uintptr_t)at.dli_fbase);
  if (image && plugin && dladdr(image, &img) &&
      img.dli_fbase == at.dli_fbase) {
    snprintf(out, size, "%s.so+0x%lx", plugin, off);
    return;
  }
  const char *file = at.dli_fname ? at.dli_fname : "";
  const char *slash = strrchr(file, '/');
  if (slash)
    file = slash + 1;
  snprintf(out, size, "%s+0x%lx", file[0] ? file : "hotswap", off);
}

void hs_guard_describe(const hs_guard_fault *f, const void *image,
                       const char *plugin, char *out, size_t size) {
  char where[160], words[64];

  hs_guard_locate(f->pc, image, plugin, where, sizeof(where));
  if (f->hang) {
    snprintf(out, size, "a hang: interrupted after %.1f s at %s",
             (double)f->ran_ns / 1e9, where);
    return;
  }
  what(f, words, sizeof(words));
  snprintf(out, size, "%s (%s) at %s", hs_guard_signal_name(f->signo), words,
           where);
}
